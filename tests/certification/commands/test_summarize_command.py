"""``smoothcert summarize`` and ``smoothcert gate`` on an imported Cohen et al. log, through the real CLI."""
from __future__ import annotations

import json
from pathlib import Path

from certification.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[3]
LOG = ROOT / "tests" / "fixtures" / "cohen2019" / "cifar10_resnet110_noise_0.25_sigma_0.25.tsv"


def test_summarize_prints_the_table_with_bounds(capsys) -> None:
    assert cli_main(["summarize", str(LOG), "--sigma", "0.25", "--radii", "0.25", "0.5", "0.75"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:4]}
    assert [rows[r][0] for r in ("0.250", "0.500", "0.750")] == ["0.600", "0.428", "0.266"]
    assert all(float(rows[r][1]) < float(rows[r][0]) for r in rows)
    assert "imported log" in out


def test_summarize_needs_sigma_for_a_log(capsys) -> None:
    assert cli_main(["summarize", str(LOG)]) == 2
    assert "--sigma" in capsys.readouterr().err


def test_gate_judges_an_imported_log(tmp_path: Path, capsys) -> None:
    out = tmp_path / "gate.json"
    code = cli_main(["gate", "--results", str(LOG), "--sigma", "0.25", "--protocol", str(ROOT / "params.yaml"),
                     "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1  # clean accuracy 0.748 (lower bound 0.713) misses the default protocol's 0.75
    assert "not identified by hash" in printed and "malignant-recall criterion is not judged" in printed
    verdict = json.loads(out.read_text())
    by_name = {c["name"]: c for c in verdict["criteria"]}
    assert abs(by_name["certified_accuracy"]["estimate"] - 0.600) < 1e-9
    assert by_name["clean_accuracy"]["passed"] is False
