"""python -m pipeline.select_sigma on a recorded `dvc exp show --json` (tests/fixtures/dvc_exp_show/SOURCE.md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from certification.errors import InputError
from pipeline.select_sigma import candidates_from_exp_show, main
from support import REPO
from support.dossier_outputs import PROTOCOL
from support.dvc_project import DVC, env_for, make_clone, run
from support.oracle import conv_onnx, write_split

RECORDED = REPO / "tests" / "fixtures" / "dvc_exp_show" / "sigma_candidates.json"


def _params(root: Path, min_clean_accuracy: float, radius: float = 0.25) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump({"gate": {**PROTOCOL, "radius": radius,
                                                               "min_clean_accuracy": min_clean_accuracy}}))


def test_recorded_queue_gives_the_candidates_and_skips_the_failed_run() -> None:
    candidates, skipped, baselines = candidates_from_exp_show(json.loads(RECORDED.read_text()))
    assert {c.name: c.metrics.sigma for c in candidates} == {"main": 0.25, "tight-jiao": 0.5, "elfin-sley": 0.12}
    assert skipped == {"alary-zags": "the run failed"} and baselines == {"main"}


def test_stale_metrics_of_another_sigma_are_not_a_candidate() -> None:
    document = json.loads(RECORDED.read_text())
    failed = next(e for e in document[1]["experiments"] if e["name"] == "alary-zags")["revs"][0]
    failed["error"] = None  # as if DVC had not flagged it: its metrics (sigma 0.25) contradict its params (0.9)
    _, skipped, _ = candidates_from_exp_show(document)
    assert skipped == {"alary-zags": "metrics/validation.json is for sigma 0.25, its params certify at 0.9"}


@pytest.mark.parametrize("min_clean, code, chosen", [
    (0.75, 0, "main"),         # sigma 0.5 has the best certified bound, but its clean-accuracy bound 0.732 < 0.75
    (0.70, 0, "tight-jiao"),   # now it is eligible and wins
    (0.90, 1, None),           # no clean-accuracy bound reaches 0.9
])
def test_select_sigma_prints_the_table_and_the_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], min_clean: float, code: int,
                                                      chosen: str | None) -> None:
    _params(tmp_path, min_clean)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pipeline.stage.PARAMS_FILE", tmp_path / "params.yaml")
    assert main(["--json", str(RECORDED), "--out", "selection.json"]) == code
    out = capsys.readouterr().out
    record = json.loads(Path("selection.json").read_text())
    assert "not a candidate: alary-zags (the run failed)" in out and len(record["candidates"]) == 3
    assert record["rule"]["min_clean_accuracy"] == min_clean and record["rule"]["radius"] == 0.25
    if chosen is None:
        assert record["chosen"] is None and "no candidate is eligible" in out
    else:
        assert record["chosen"]["name"] == chosen and f"| chosen | {chosen} |" in out
        assert ("nothing to apply" in out) == (chosen == "main")
        assert (f"dvc exp apply {chosen}" in out) == (chosen != "main")


def test_a_gate_radius_other_than_the_validated_one_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _params(tmp_path, 0.75, radius=0.5)
    monkeypatch.setattr("pipeline.stage.PARAMS_FILE", tmp_path / "params.yaml")
    with pytest.raises(InputError, match="validated at radius 0.25, but the gate radius is 0.5"):
        main(["--json", str(RECORDED), "--out", str(tmp_path / "selection.json")])
    assert not (tmp_path / "selection.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not DVC.is_file(), reason="needs dvc beside the Python interpreter")
def test_a_real_validate_experiment_is_a_candidate(tmp_path: Path) -> None:
    """Real `dvc exp run -S certify.sigma=0.12 validate` and `dvc exp show`: the repository's validate stage alone
    (its dvc.yaml entry) on a tiny ONNX model and validation split committed to git, with no test split at all.
    (A queue of two, `--queue` then `dvc exp run --run-all`, took 60 s on the shared VM: over the test budget; the
    recorded fixture above comes from such a queue.)"""
    root = tmp_path / "repo"
    make_clone(root, {"validate": {"n0": 10, "n": 100, "alpha": 0.01, "max_examples": 4},
                      "gate": {"radius": 0.05, "min_clean_accuracy": 0.0}})
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["validate"]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"validate": stage}}, sort_keys=False))
    for folder in ("models", "data"):
        (root / folder).mkdir(exist_ok=True)
    conv_onnx(root / "models" / "model.onnx", (3, 8, 8), num_classes=4, seed=5)
    (root / "models" / "model.json").write_text(json.dumps(
        {"sha256": "x", "class_names": ["a", "b", "c", "d"], "malignant_classes": [], "train_sigma": 0.25}))
    rng = np.random.default_rng(2)
    write_split(root / "data" / "val.npz", rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8),
                rng.integers(0, 4, size=6))
    env = env_for(root, SMOOTHCERT_TRACKING="off")
    for cmd in (["git", "add", "-A", "-f", "models", "data", "."], ["git", "commit", "-q", "-m", "tiny"],
                [DVC, "exp", "run", "-n", "sigma-012", "-S", "certify.sigma=0.12", "validate"]):
        done = run(cmd, root, env)
        assert done.returncode == 0, (cmd, done.stdout[-2000:], done.stderr[-2000:])
    shown = run([sys.executable, "-m", "pipeline.select_sigma", "--out", "selection.json"], root, env)
    assert shown.returncode == 0, shown.stdout[-2000:] + shown.stderr[-2000:]
    record = json.loads((root / "selection.json").read_text())
    assert record["chosen"] == {"name": "sigma-012", "sigma": 0.12} and "dvc exp apply sigma-012" in shown.stdout
    (only,) = record["candidates"]
    assert only["n_examples"] == 4 and only["radius"] == 0.05 and only["n"] == 100
    assert record["skipped"] == {"main": "no metrics/validation.json"}
