"""The device stage: models/smoothed.onnx at k = deploy.n and the certified sigma, both ONNX files signed with the
dossier's key rules; with certify.lighting on the graph draws the certified lighting covariance and the card records
it; bad params (k < 1, a lighting tau of 0) exit 2 and write nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from certification.device_card import read_device_card
from certification.smoothed_graph import read_smoothed_lighting, read_smoothed_metadata
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


def _lighting_stage(project: Path, lighting: dict) -> dict:
    """Run the stage with certify.lighting on; the device card, after checking that the graph draws the covariance
    certification builds for these params (the same library function) and the card records it."""
    from certification.lighting import smoothing_covariance
    from pipeline.device import main

    _project(project, 64, lighting)
    assert main() == 0
    assert all((project / p).is_file() for p in OUTPUTS)
    expected = smoothing_covariance(lighting["directions"], lighting["tau"], 0.25, (3, 8, 8))
    assert read_smoothed_metadata(project / "models/smoothed.onnx") == (64, 0.25, 0.001)
    assert read_smoothed_lighting(project / "models/smoothed.onnx") == expected
    card = read_device_card(project / "models/smoothed.json", root=project)
    assert card["smoothed"]["lighting"] == expected.to_record()
    assert json.loads(card["smoothed"]["metadata"]["lighting"]) == expected.to_record()
    return card


@pytest.mark.parametrize("lighting", [{"directions": "dc", "tau": 0.05}, {"directions": "dc+ramps", "tau": 0.02}])
def test_lighting_on_builds_the_lighting_graph(project: Path, lighting: dict) -> None:
    card = _lighting_stage(project, lighting)
    assert "lighting noise" in card["smoothed"]["metadata"]["noise"]


def test_lighting_off_records_no_lighting(project: Path) -> None:
    from pipeline.device import main

    _project(project, 64, {"directions": "none", "tau": 0.0})
    assert main() == 0
    card = json.loads((project / "models/smoothed.json").read_text())
    assert "lighting" not in card["smoothed"] and "lighting" not in card["smoothed"]["metadata"]
    assert read_smoothed_lighting(project / "models/smoothed.onnx") is None


def test_bad_lighting_exits_2_and_writes_nothing(project: Path, capsys) -> None:
    from pipeline.device import main
    from pipeline.stage import run_stage

    _project(project, 64, {"directions": "dc", "tau": 0.0})
    with pytest.raises(SystemExit) as code:
        run_stage("device", main)
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "certify.lighting.directions is dc but certify.lighting.tau is 0" in err
    assert not any((project / p).exists() for p in OUTPUTS) and not (project / ".smoothcert").exists()
