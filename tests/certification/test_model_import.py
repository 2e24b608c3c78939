"""Importing a user's ONNX file: byte-for-byte copy with its card, NHWC/fixed batch adapted, and one-line errors
(nothing written) for a wrong class count, a wrong image size, a missing or non-ONNX file."""
from __future__ import annotations

import numpy as np
import pytest

from certification.dataset_io import Split
from certification.errors import InputError, MissingInputError
from certification.fileio import sha256_file
from certification.model_import import SuppliedModel, import_model_files
from support.user_model import nhwc_user_model

NAMES = ["nevus", "seborrheic_keratosis", "melanoma", "basal_cell_carcinoma"]


def _val(size: int) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (6, size, size, 3), dtype=np.uint8), rng.integers(0, 4, 6).astype(np.int64))


def test_import_copies_the_file_and_describes_it(tmp_path) -> None:
    source = nhwc_user_model(tmp_path / "mine.onnx", 8, 4)
    shipped = tmp_path / "models" / "model.onnx"
    outcome = import_model_files(SuppliedModel(source, NAMES, ["melanoma"], 0.25, "mine.onnx"), _val(8), shipped,
                                 "models/model.onnx", seed=0)
    card = outcome.card
    assert sha256_file(shipped) == sha256_file(source) == card["sha256"] == card["supplied"]["sha256"]
    assert card["supplied"]["source"] == "mine.onnx" and card["supplied"]["trained_by_pipeline"] is False
    assert card["input_shape"] == [None, 3, 8, 8] and card["class_names"] == NAMES and card["train_sigma"] == 0.25
    assert card["parameters"] == 3 * 8 * 8 * 4 + 4 and card["opset"] == 18 and card["flops"] is None
    steps = " ".join(card["supplied"]["input_adaptation"])
    assert "NHWC" in steps and "batch" in steps
    assert outcome.metrics["onnxruntime"]["n"] == 6


@pytest.mark.parametrize("case", ["classes", "size", "missing", "not onnx", "malignant"])
def test_bad_supplied_models_are_refused_and_nothing_is_written(tmp_path, case: str) -> None:
    source = nhwc_user_model(tmp_path / "mine.onnx", 8, 3 if case == "classes" else 4)
    if case == "missing":
        source = tmp_path / "absent.onnx"
    if case == "not onnx":
        source.write_bytes(b"not a protobuf at all")
    malignant = ["squamous"] if case == "malignant" else ["melanoma"]
    shipped = tmp_path / "models" / "model.onnx"
    error = MissingInputError if case == "missing" else InputError
    with pytest.raises(error) as caught:
        import_model_files(SuppliedModel(source, NAMES, malignant, None), _val(16 if case == "size" else 8), shipped,
                           "models/model.onnx", seed=0)
    assert "\n" not in str(caught.value)
    assert not list((tmp_path / "models").glob("*"))  # no model, no temporary file
