"""Shared plumbing: strict params sections, split validation, atomic writes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from certification.dataset_io import load_split
from certification.errors import InputError
from certification.fileio import atomic_output, sha256_file, write_json_atomic
from pipeline.stage import load_section

KEYS = {"sigma": float, "epochs": int, "name": str}


def _params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_load_section_accepts_exact_keys_and_coerces_int_to_float(tmp_path: Path) -> None:
    path = _params(tmp_path, "train:\n  sigma: 1\n  epochs: 3\n  name: x\n")
    assert load_section("train", KEYS, path) == {"sigma": 1.0, "epochs": 3, "name": "x"}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("train:\n  sigma: 0.1\n  epochs: 3\n  name: x\n  extra: 1\n", "unknown key 'train.extra'"),
        ("train:\n  sigma: 0.1\n  name: x\n", "missing key 'train.epochs'"),
        ("train:\n  sigma: 0.1\n  epochs: 2.5\n  name: x\n", "'train.epochs' must be int"),
        ("train:\n  sigma: true\n  epochs: 2\n  name: x\n", "'train.sigma' must be float"),
        ("other: {}\n", "missing section 'train:'"),
        ("train: [\n", "not valid YAML"),
    ],
)
def test_load_section_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(InputError) as err:
        load_section("train", KEYS, _params(tmp_path, text))
    assert needle in str(err.value) and "\n" not in str(err.value)


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_load_split_converts_to_model_input(tmp_path: Path) -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    split = load_split(_save(tmp_path / "s.npz", images=images, labels=np.array([0, 1]), fitzpatrick=np.array([1, 6])))
    x = split.model_input()
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    assert x[1, 2, 3, 3] == pytest.approx(images[1, 3, 3, 2] / 255.0)
    assert split.image_shape_chw == (3, 4, 4) and split.metadata["fitzpatrick"].tolist() == [1, 6]


@pytest.mark.parametrize(
    "arrays,needle",
    [
        ({"labels": np.array([0])}, "missing array 'images'"),
        ({"images": np.zeros((1, 4, 4, 3), np.int16), "labels": np.array([0])}, "dtype int16"),
        ({"images": np.zeros((1, 4, 4), np.uint8), "labels": np.array([0])}, "4 dimensions"),
        ({"images": np.zeros((2, 4, 4, 3), np.uint8), "labels": np.array([0])}, "2 images but 1 labels"),
        ({"images": np.zeros((0, 4, 4, 3), np.uint8), "labels": np.zeros(0, np.int64)}, "empty"),
        ({"images": np.full((1, 3, 4, 4), np.nan, np.float32), "labels": np.array([0])}, "NaN or inf"),
        ({"images": np.full((1, 3, 4, 4), 2.0, np.float32), "labels": np.array([0])}, "[0, 1]"),
        ({"images": np.zeros((1, 4, 4, 3), np.uint8), "labels": np.array([5])}, "outside the class range"),
        ({"images": np.zeros((1, 4, 4, 3), np.uint8), "labels": np.array([0.5])}, "integer"),
    ],
)
def test_load_split_rejects_bad_files(tmp_path: Path, arrays: dict, needle: str) -> None:
    with pytest.raises(InputError) as err:
        load_split(_save(tmp_path / "bad.npz", **arrays), num_classes=4)
    assert needle in str(err.value)


def test_load_split_not_an_npz(tmp_path: Path) -> None:
    bad = tmp_path / "x.npz"
    bad.write_text("hello")
    with pytest.raises(InputError, match="not an .npz file"):
        load_split(bad)


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists() and list(target.parent.iterdir()) == []
    write_json_atomic(target, {"b": 1, "a": 2})
    assert target.read_text().startswith('{\n  "a": 2')
    assert len(sha256_file(target)) == 64


def test_unwritable_outputs_are_one_line_input_errors(tmp_path: Path) -> None:
    import os

    from certification.fileio import write_text_atomic

    with pytest.raises(InputError, match="is a directory"):
        write_text_atomic(tmp_path, "x")
    with pytest.raises(InputError, match="cannot write here"):
        write_text_atomic(tmp_path / ("n" * 300 + ".json"), "x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.geteuid() != 0:  # root writes anywhere
            with pytest.raises(InputError, match="cannot write here"):
                write_text_atomic(locked / "out.json", "x")
    finally:
        locked.chmod(0o700)


def test_empty_npy_and_non_zip_files_are_not_splits(tmp_path: Path) -> None:
    import numpy as np

    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "text.npz").write_bytes("café".encode("latin-1"))
    for name, kind in (("empty.npz", "an empty file"), ("array.npy", "a single .npy array"), ("text.npz", "not a zip archive")):
        with pytest.raises(InputError, match=f"not an .npz file \\({kind}\\)"):
            load_split(tmp_path / name)
