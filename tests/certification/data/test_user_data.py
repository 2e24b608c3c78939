"""A user's own data: malignant classes named or refused, ISIC's one-hot ground truth, any image size, and the
CLI reading a DermaMNIST-format file with the pipeline's keys."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from certification.data.real import load_folder, load_npz
from certification.data.sources import build_dataset
from certification.dataset_io import load_split
from certification.errors import InputError

SIZES = {"train": 1, "val": 1, "test": 1}


def isic_folder(root: Path, header: list[str], rows: list[tuple[str, list[str]]], csv_name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    lines = [",".join(header)]
    for name, values in rows:
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(root / f"{name}.jpg")
        lines.append(",".join([name, *values]))
    (root / csv_name).write_text("\n".join(lines) + "\n")
    return root


def labels_folder(root: Path, labels: list[str]) -> Path:
    rows = [(f"ISIC_{i:07d}", [label, ["train", "val", "test"][i % 3]]) for i, label in enumerate(labels)]
    return isic_folder(root, ["image", "label", "split"], rows, "labels.csv")


def test_isic_codes_without_malignant_classes_are_refused(tmp_path: Path) -> None:
    folder = labels_folder(tmp_path / "isic", ["NV", "BKL", "DF", "NV", "BKL", "DF"])
    with pytest.raises(InputError, match="data.malignant_classes") as info:
        build_dataset("folder", str(folder), 32, SIZES, 0, classes=["NV", "BKL", "DF"])
    assert "\n" not in str(info.value)


def test_isic_codes_are_malignant_by_name_or_as_declared(tmp_path: Path) -> None:
    folder = labels_folder(tmp_path / "isic", ["MEL", "NV", "BCC", "NV", "MEL", "BCC"])
    known = build_dataset("folder", str(folder), 32, SIZES, 0, classes=["MEL", "NV", "BCC"])
    assert known.malignant == ["MEL", "BCC"]
    declared = build_dataset("folder", str(folder), 32, SIZES, 0, classes=["MEL", "NV", "BCC"], malignant_classes=["MEL"])
    assert declared.malignant == ["MEL"]
    with pytest.raises(InputError, match="'SCC' .* is not one of the classes"):
        build_dataset("folder", str(folder), 32, SIZES, 0, classes=["MEL", "NV", "BCC"], malignant_classes=["SCC"])


def test_isic_one_hot_ground_truth_is_read(tmp_path: Path) -> None:
    header = ["image", "MEL", "NV", "BCC", "UNK"]
    one_hot = {"MEL": ["1.0", "0.0", "0.0", "0.0"], "NV": ["0.0", "1.0", "0.0", "0.0"], "BCC": ["0", "0", "1", "0"]}
    names = ["MEL", "NV", "BCC", "NV", "NV", "MEL", "BCC", "NV", "MEL", "NV"] * 3
    rows = [(f"ISIC_{i:07d}", one_hot[n]) for i, n in enumerate(names)]
    folder = isic_folder(tmp_path / "isic", header, rows, "ISIC_2019_Training_GroundTruth.csv")
    dataset = load_folder(folder, 40, seed=3)
    assert dataset.class_names == ["MEL", "NV", "BCC", "UNK"]
    assert dataset.malignant_classes == ["MEL", "BCC"]
    images = np.concatenate([dataset.splits[s][0] for s in ("train", "val", "test")])
    labels = np.concatenate([dataset.splits[s][1] for s in ("train", "val", "test")])
    assert images.shape == (30, 40, 40, 3)
    assert sorted(labels.tolist()) == sorted(["MEL", "NV", "BCC", "UNK"].index(n) for n in names)


def test_one_hot_rows_need_exactly_one_class(tmp_path: Path) -> None:
    rows = [("ISIC_0000000", ["1", "1", "0"]), ("ISIC_0000001", ["0", "1", "0"])]
    folder = isic_folder(tmp_path / "isic", ["image", "MEL", "NV", "BCC"], rows, "ISIC2018_Task3_GroundTruth.csv")
    with pytest.raises(InputError, match="line 2: expected exactly one class column equal to 1"):
        load_folder(folder, 32, seed=0)


@pytest.mark.parametrize("size", [224, 50])
def test_real_data_takes_any_size_the_model_takes(tmp_path: Path, size: int) -> None:
    folder = labels_folder(tmp_path / "isic", ["MEL", "NV", "BCC", "NV", "MEL", "BCC"])
    dataset = build_dataset("folder", str(folder), size, SIZES, 0, classes=["MEL", "NV", "BCC"])
    assert dataset.splits["train"][0].shape[1:] == (size, size, 3)


def test_tiny_sizes_and_synthetic_224_are_refused(tmp_path: Path) -> None:
    folder = labels_folder(tmp_path / "isic", ["MEL", "NV", "BCC"])
    with pytest.raises(InputError, match=">= 8"):
        build_dataset("folder", str(folder), 4, SIZES, 0, classes=["MEL", "NV", "BCC"])
    with pytest.raises(InputError, match="28, 32, 64"):
        build_dataset("synthetic", "", 224, SIZES, 0)


def test_cli_split_loader_reads_the_dermamnist_keys(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 256, (5, 28, 28, 3), dtype=np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": rng.integers(0, 7, (5, 1)).astype(np.uint8) for s in ("train", "val", "test")})
    path = tmp_path / "dermamnist.npz"
    np.savez(path, **arrays)
    split = load_split(path, num_classes=7)
    assert split.labels.tolist() == arrays["test_labels"][:, 0].tolist()
    np.testing.assert_array_equal(split.images, arrays["test_images"])
    assert split.model_input().shape == (5, 3, 28, 28)
    assert load_split(path, split="val").labels.tolist() == arrays["val_labels"][:, 0].tolist()
    pipeline_view = load_npz(path, 28)  # the data stage's reader, same file, same test split
    assert pipeline_view.splits["test"][1].tolist() == split.labels.tolist()
