"""The validate stage: CERTIFY on the validation split at the certification sigma, metrics/validation.json, and
never the test split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from certification.errors import InputError
from certification.sigma_selection import read_validation_metrics
from support.dossier_outputs import PROTOCOL
from support.oracle import conv_onnx, write_split

CLASSES = ["nevus", "seborrheic_keratosis", "melanoma", "basal_cell_carcinoma"]
VALIDATE = {"n0": 20, "n": 300, "alpha": 0.01, "seed": 5, "max_examples": 6, "confidence": 0.95}
CERTIFY = {"sigma": None, "n0": 20, "n": 300, "alpha": 0.01, "max_examples": 6, "seed": 3, "confidence": 0.95,
           "radii": [0.0, 0.25]}


def _workspace(root: Path, validate: dict, certify_sigma: float | None = None) -> None:
    (root / "models").mkdir()
    (root / "data").mkdir()
    conv_onnx(root / "models" / "model.onnx", (3, 8, 8), num_classes=4, seed=5)
    (root / "models" / "model.json").write_text(json.dumps(
        {"sha256": "x", "class_names": CLASSES, "malignant_classes": CLASSES[2:], "train_sigma": 0.25}))
    rng = np.random.default_rng(2)
    write_split(root / "data" / "val.npz", rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8),
                rng.integers(0, 4, size=12))
    # no data/test.npz: the stage must not need it
    (root / "params.yaml").write_text(yaml.safe_dump({
        "validate": validate, "certify": {**CERTIFY, "sigma": certify_sigma}, "gate": PROTOCOL,
        "runtime": {"certify_batch_size": 100}}))


@pytest.mark.parametrize("certify_sigma, expected", [(None, 0.25), (0.12, 0.12)])
def test_validate_stage_writes_the_validation_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      certify_sigma: float | None, expected: float) -> None:
    _workspace(tmp_path, VALIDATE, certify_sigma)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    from pipeline.validate import main

    assert main() == 0
    metrics = read_validation_metrics(Path("metrics/validation.json"))
    assert metrics.sigma == expected and metrics.radius == PROTOCOL["radius"] and metrics.n_examples == 6
    assert (metrics.n0, metrics.n, metrics.alpha, metrics.seed, metrics.confidence) == (20, 300, 0.01, 5, 0.95)
    assert 0 <= metrics.certified_accuracy_lower <= metrics.certified_accuracy <= metrics.clean_accuracy
    assert sorted(p.name for p in Path("data").iterdir()) == ["val.npz"]


@pytest.mark.parametrize("validate, message", [({**VALIDATE, "n2": 5}, "validate.n2"),
                                               ({**VALIDATE, "n": 0}, "n must be an integer of at least 1"),
                                               ({**VALIDATE, "confidence": 1.5}, "confidence must lie in")])
def test_validate_stage_refuses_bad_params_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              validate: dict, message: str) -> None:
    _workspace(tmp_path, validate)
    monkeypatch.chdir(tmp_path)
    from pipeline.validate import main

    with pytest.raises(InputError, match=message):
        main()
    assert not Path("metrics").exists()
