"""Data stage: synthetic generator, real-data loaders, datasheet, stage validation (no partial outputs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from certification.data import synthetic
from certification.data.real import DERMAMNIST_CLASSES, load_folder, load_npz
from certification.dataset_io import METADATA_FIELDS, load_split
from certification.errors import InputError
from certification.fileio import sha256_file
from support import REPO


TINY_DATA = {"source": "synthetic", "path": "", "image_size": 28, "n_train": 40, "n_val": 20, "n_test": 20, "seed": 7,
             "classes": [], "malignant_classes": []}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temporary working directory for stage runs; tracking writes only to a store inside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return tmp_path


def write_params(path: Path, data: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump({"data": data}), encoding="utf-8")


def run_data_stage() -> None:
    from pipeline import data

    data.main()


# ---------------------------------------------------------------- synthetic generator

def test_synthetic_is_deterministic_and_well_formed():
    a = synthetic.generate_split(64, 32, seed=5, split="val")
    b = synthetic.generate_split(64, 32, seed=5, split="val")
    c = synthetic.generate_split(64, 32, seed=6, split="val")
    assert a.images.shape == (64, 32, 32, 3) and a.images.dtype == np.uint8
    assert a.labels.dtype == np.int64 and set(np.unique(a.labels)) <= set(range(len(synthetic.CLASS_NAMES)))
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert set(a.metadata) == set(METADATA_FIELDS)
    assert a.metadata["fitzpatrick"].dtype == np.int64
    assert a.metadata["fitzpatrick"].min() >= 1 and a.metadata["fitzpatrick"].max() <= 6
    for name in ("hair", "illumination", "vignette", "blur"):
        values = a.metadata[name]
        assert values.dtype == np.float32 and values.min() >= 0 and values.max() <= 1
    # Splits from one seed are independent streams.
    assert not np.array_equal(synthetic.generate_split(64, 32, 5, "train").images, a.images)


def test_synthetic_classes_and_nuisance_are_independent():
    s = synthetic.generate_split(1500, 28, seed=11, split="train")
    counts = np.bincount(s.labels, minlength=4) / len(s.labels)
    assert np.all(np.abs(counts - np.array(synthetic.CLASS_PROBABILITIES)) < 0.05)
    # Skin type is drawn independently of the class: malignant share is similar on light and dark skin.
    malignant = np.isin(s.labels, [synthetic.CLASS_NAMES.index(c) for c in synthetic.MALIGNANT_CLASSES])
    light, dark = s.metadata["fitzpatrick"] <= 3, s.metadata["fitzpatrick"] >= 4
    assert abs(malignant[light].mean() - malignant[dark].mean()) < 0.1
    # Classes differ in appearance: melanoma is on average darker than seborrheic keratosis (clinical cue).
    centre = s.images[:, 9:19, 9:19].astype(float).mean(axis=(1, 2, 3))
    assert centre[s.labels == 2].mean() < centre[s.labels == 1].mean()


@pytest.mark.parametrize("size", [28, 64])
def test_synthetic_supported_sizes(size):
    assert synthetic.generate_split(3, size, 1).images.shape == (3, size, size, 3)


@pytest.mark.parametrize("size", [16, 33, 0, True, "32"])
def test_synthetic_rejects_unsupported_size(size):
    with pytest.raises(InputError, match="unsupported image size"):
        synthetic.generate_split(3, size, 1)


def test_synthetic_rejects_empty_split():
    with pytest.raises(InputError, match="at least one image"):
        synthetic.generate_split(0, 32, 1)


# ---------------------------------------------------------------- real data

def dermamnist_file(path: Path, n: int = 12, size: int = 28, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 7, (n, 1)).astype(np.uint8)
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_npz_loader_reads_dermamnist_layout(tmp_path):
    dataset = load_npz(dermamnist_file(tmp_path / "derma.npz"), 32)
    assert dataset.class_names == list(DERMAMNIST_CLASSES)
    assert dataset.malignant_classes == ["akiec", "bcc", "mel"]
    images, labels, metadata = dataset.splits["train"]
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8  # resized 28 -> 32
    assert labels.shape == (12,) and labels.dtype == np.int64 and metadata == {}


@pytest.mark.parametrize(
    "override, message",
    [
        ({"val_labels": None}, "missing array 'val_labels'"),
        ({"train_images": np.zeros((12, 28, 28, 3), np.float32)}, "must be uint8"),
        ({"test_images": np.zeros((12, 28, 28, 4), np.uint8)}, "shape"),
        ({"test_labels": np.full((12, 1), 9), "class_names": np.array(DERMAMNIST_CLASSES)}, "label 9 is outside the class range"),
        ({"test_labels": np.full((12, 1), -1)}, "label -1 is outside the class range"),
        ({"val_images": np.zeros((0, 28, 28, 3), np.uint8), "val_labels": np.zeros((0, 1), np.uint8)}, "empty"),
        ({"train_labels": np.zeros((5, 1), np.uint8)}, "12 images but 5 labels"),
    ],
)
def test_npz_loader_rejects_bad_files(tmp_path, override, message):
    with pytest.raises(InputError, match=message):
        load_npz(dermamnist_file(tmp_path / "bad.npz", **override), 28)


def make_folder(root: Path, rows: list[tuple[str, str, str]], extra_header: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    lines = ["image,label,split" + extra_header]
    for name, label, split in rows:
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(root / f"{name}.png")
        lines.append(f"{name},{label},{split}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_folder_loader_reads_names_and_metadata(tmp_path):
    rows = [(f"img{i}", ["nevus", "melanoma"][i % 2], ["train", "val", "test"][i % 3]) for i in range(9)]
    folder = make_folder(tmp_path / "isic", rows)
    table = (folder / "labels.csv").read_text().splitlines()
    table = [table[0] + ",fitzpatrick,hair"] + [f"{line},{['II', '5', 'VI'][i % 3]},0.5" for i, line in enumerate(table[1:])]
    (folder / "labels.csv").write_text("\n".join(table) + "\n")
    dataset = load_folder(folder, 28, seed=0)
    assert dataset.class_names == list(synthetic.CLASS_NAMES)  # synthetic vocabulary keeps its order
    assert dataset.malignant_classes == ["melanoma", "basal_cell_carcinoma"]
    images, labels, metadata = dataset.splits["train"]
    assert images.shape == (3, 28, 28, 3) and set(labels.tolist()) <= {0, 2}
    assert metadata["fitzpatrick"].tolist() == [2, 2, 2] and metadata["hair"].dtype == np.float32


def test_folder_loader_rejects_unreadable_image(tmp_path):
    rows = [(f"img{i}", "nevus", ["train", "val", "test"][i % 3]) for i in range(6)]
    folder = make_folder(tmp_path / "isic", rows)
    (folder / "img4.png").write_bytes(b"this is not a png")
    with pytest.raises(InputError, match="img4.png: unreadable image"):
        load_folder(folder, 28, seed=0)


def test_folder_loader_rejects_empty_split_and_missing_image(tmp_path):
    folder = make_folder(tmp_path / "a", [("x0", "nevus", "train"), ("x1", "nevus", "val")])
    with pytest.raises(InputError, match=r"\[test\].*empty"):
        load_folder(folder, 28, seed=0)
    (folder / "x1.png").unlink()
    with pytest.raises(InputError, match="image 'x1' not found"):
        load_folder(folder, 28, seed=0)


@pytest.mark.parametrize("labels, classes, message", [
    (["nevus", "melanomaa", "nevus"], (), "label 'melanomaa' is not a known class name; declare the classes"),
    (["nevus", "0", "nevus"], (), "labels mix class indices and class names"),
    (["0", "1", "1000000"], ("benign", "malignant"), "label 1000000 is not an index of the 2 classes"),
    (["0", "1", "1"], (), "labels are class indices; name the classes in params data.classes"),
    (["benign", "malignent", "benign"], ("benign", "malignant"), "label 'malignent' is not one of data.classes"),
    (["a", "b", "a"], ("a", "a"), "class name 'a' appears twice"),
])
def test_folder_labels_must_come_from_declared_classes(tmp_path, labels, classes, message):
    """A typo must not add a class (and re-sort every class index); indices need declared names."""
    folder = make_folder(tmp_path / "isic", [(f"img{i}", label, split) for i, (label, split)
                                             in enumerate(zip(labels, ["train", "val", "test"]))])
    with pytest.raises(InputError, match=message):
        load_folder(folder, 28, seed=0, classes=classes)


def test_folder_images_must_stay_inside_the_folder(tmp_path):
    folder = make_folder(tmp_path / "isic", [("x0", "nevus", "train"), ("x1", "nevus", "val"), ("x2", "nevus", "test")])
    (tmp_path / "outside.png").write_bytes((folder / "x0.png").read_bytes())
    for name in ("../outside.png", str(tmp_path / "outside.png"), "/etc/passwd"):
        table = (folder / "labels.csv").read_text().replace("x0,", f"{name},", 1)
        (folder / "labels.csv").write_text(table)
        with pytest.raises(InputError, match="is outside the data folder"):
            load_folder(folder, 28, seed=0)
        (folder / "labels.csv").write_text(table.replace(f"{name},", "x0,", 1))


def test_declared_classes_name_index_labels(tmp_path):
    folder = make_folder(tmp_path / "isic", [("x0", "0", "train"), ("x1", "1", "val"), ("x2", "1", "test")])
    dataset = load_folder(folder, 28, seed=0, classes=("benign", "malignant"))
    assert dataset.class_names == ["benign", "malignant"] and dataset.splits["val"][1].tolist() == [1]


def test_duplicate_class_names_in_an_npz_are_refused(tmp_path):
    path = tmp_path / "derma.npz"
    dermamnist_file(path, class_names=np.array(["a", "b", "b", "c", "d", "e", "f"]))
    with pytest.raises(InputError, match="class name 'b' appears twice"):
        load_npz(path, 28)


# ---------------------------------------------------------------- the stage

def test_data_stage_writes_contract_outputs(workdir):
    write_params(workdir / "params.yaml", TINY_DATA)
    run_data_stage()
    sheet = json.loads((workdir / "data/datasheet.json").read_text())
    assert sheet["classes"] == list(synthetic.CLASS_NAMES)
    assert sheet["malignant_indices"] == [2, 3] and sheet["image_size"] == 28 and sheet["seed"] == 7
    for split, n in (("train", 40), ("val", 20), ("test", 20)):
        path = workdir / f"data/{split}.npz"
        loaded = load_split(path, num_classes=4)
        assert len(loaded) == n and loaded.images.shape[1:] == (28, 28, 3)
        assert set(loaded.metadata) == set(METADATA_FIELDS)
        info = sheet["splits"][split]
        assert info["sha256"] == sha256_file(path) and info["n"] == n
        assert sum(info["class_counts"].values()) == n and sum(info["fitzpatrick_counts"].values()) == n
    first = (workdir / "data/train.npz").read_bytes()
    run_data_stage()
    assert (workdir / "data/train.npz").read_bytes() == first  # byte-stable outputs (no DVC churn)


def test_data_stage_from_npz_source(workdir):
    dermamnist_file(workdir / "derma.npz")
    write_params(workdir / "params.yaml", {**TINY_DATA, "source": "npz", "path": "derma.npz"})
    run_data_stage()
    sheet = json.loads((workdir / "data/datasheet.json").read_text())
    assert sheet["classes"] == list(DERMAMNIST_CLASSES) and sheet["splits"]["val"]["n"] == 12
    assert sheet["splits"]["val"]["fitzpatrick_counts"]["unknown"] == 12


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "red"}, "unknown key 'data.colour'"),
        ({"seed": None}, "missing key 'data.seed'"),
        ({"image_size": 48}, "unsupported image size 48"),  # synthetic data: 28, 32 or 64 only
        ({"n_val": 0}, "data.n_val must be >= 1"),
        ({"source": "csv"}, "data.source must be one of"),
        ({"source": "npz", "path": "nowhere.npz"}, "data file not found"),
    ],
)
def test_data_stage_rejects_bad_params_without_outputs(workdir, change, message):
    params = {**TINY_DATA, **change}
    params = {k: v for k, v in params.items() if v is not None}
    write_params(workdir / "params.yaml", params)
    with pytest.raises(InputError, match=message):
        run_data_stage()
    assert not (workdir / "data").exists() or not any((workdir / "data").iterdir())


def test_data_stage_cli_exits_2_with_one_line(workdir):
    dermamnist_file(workdir / "derma.npz", test_labels=np.full((12, 1), 7), class_names=np.array(DERMAMNIST_CLASSES))
    write_params(workdir / "params.yaml", {**TINY_DATA, "source": "npz", "path": "derma.npz"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pipeline.data"], cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("data: error:") and "label 7 is outside the class range" in lines[0]
    assert not (workdir / "data").exists()
