"""The device stage: models/smoothed.onnx at k = deploy.n and the certified sigma, both ONNX files signed with the
dossier's key rules; bad params (k < 1) exit 2 and write nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from certification.smoothed_graph import read_smoothed_metadata
from support.oracle import conv_onnx

OUTPUTS = ("models/smoothed.onnx", "models/model.onnx.p7s", "models/smoothed.onnx.p7s", "models/smoothed.json")


def _project(root: Path, n: int, lighting: dict | None = None) -> None:
    (root / "models").mkdir()
    conv_onnx(root / "models/model.onnx", (3, 8, 8), num_classes=4)
    (root / "models/model.json").write_text(json.dumps({"train_sigma": 0.25}))
    params = {"deploy": {"n": n, "alpha": 0.001, "latency_repeats": 2},
              "certify": {"sigma": None, "n0": 10, "n": 100, "alpha": 0.001, "max_examples": 0, "seed": 3,
                          "confidence": 0.95, "radii": [0.0], **({"lighting": lighting} if lighting else {})},
              "dossier": {"signing_key": "", "passphrase_env": "SMOOTHCERT_KEY_PASSPHRASE", "approval_fields": [],
                          "tsa_url": "", "trust_root": "", "require_approvals": False}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    monkeypatch.delenv("SMOOTHCERT_SIGNING_KEY", raising=False)
    return tmp_path


def test_device_stage_builds_and_signs(project: Path) -> None:
    from certification.cli import main as cli
    from pipeline.device import main

    _project(project, 64)
    assert main() == 0
    assert all((project / p).is_file() for p in OUTPUTS)
    assert read_smoothed_metadata(project / "models/smoothed.onnx") == (64, 0.25, 0.001)
    card = json.loads((project / "models/smoothed.json").read_text())
    assert card["signing_key"] == "development" and card["smoothed"]["k"] == 64
    assert cli(["verify-model", "models/model.onnx"]) == 3 and cli(["verify-model", "models/smoothed.onnx"]) == 3


def test_k_below_one_exits_2_and_writes_nothing(project: Path, capsys) -> None:
    from pipeline.device import main
    from pipeline.stage import run_stage

    _project(project, 0)
    with pytest.raises(SystemExit) as code:
        run_stage("device", main)
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "k (noisy copies per image) must be an integer of at least 1" in err
    assert not any((project / p).exists() for p in OUTPUTS) and not (project / ".smoothcert").exists()


def test_lighting_on_is_refused_before_anything_is_written(project: Path, capsys) -> None:
    """The graph draws isotropic noise: with lighting certificates it would not be the certified classifier."""
    from pipeline.device import main
    from pipeline.stage import run_stage

    _project(project, 64, {"directions": "dc", "tau": 0.05})
    with pytest.raises(SystemExit) as code:
        run_stage("device", main)
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "draws isotropic noise only" in err
    assert not any((project / p).exists() for p in OUTPUTS) and not (project / ".smoothcert").exists()
