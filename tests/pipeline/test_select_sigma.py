"""python -m pipeline.select_sigma on a recorded `dvc exp show --json` (tests/fixtures/dvc_exp_show/SOURCE.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from certification.errors import InputError
from pipeline.select_sigma import candidates_from_exp_show, main
from support import REPO
from support.dossier_outputs import PROTOCOL

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
