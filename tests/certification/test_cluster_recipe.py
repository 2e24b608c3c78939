"""The README's cluster recipe end to end: two shards certified with their summaries, merged, then gate, dossier and
verify on the merged files exactly as on a single-machine run (one producer of metrics/certify.json)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from certification.records import read_certify_records
from support.dossier_outputs import ALPHA, N, N0, PROTOCOL, RADII, SIGMA, make_outputs, write_evaluate
from support.signed_dossier import PARAMS, REPO, copy_templates


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMOOTHCERT_TRACKING": "off", "SOURCE_DATE_EPOCH": "1790000000", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _certify(root: Path, out: str, *extra: str) -> None:
    run = _run(root, "-m", "certification.cli", "certify", "--model", "models/model.onnx", "--data", "data/test.npz",
               "--sigma", str(SIGMA), "--n0", str(N0), "--n", str(N), "--alpha", str(ALPHA), "--seed", "3",
               "--threads", "1", "--noise-threads", "1", "--radii", *map(str, RADII), "--out", out, *extra)
    assert run.returncode == 0, run.stderr


@pytest.mark.slow
def test_two_shards_merge_into_a_run_that_gate_dossier_and_verify_accept(tmp_path: Path) -> None:
    root = make_outputs(tmp_path / "project")
    copy_templates(root / "dossier_templates")
    (root / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "gate": PROTOCOL}))
    _certify(root, "single.jsonl", "--summary", "single.json")
    for k in (0, 1):
        _certify(root, f"shard_{k}.jsonl", "--shard", f"{k}/2", "--summary", f"shard_{k}.json")
    merge = _run(root, "-m", "certification.cli", "merge", "shard_0.jsonl", "shard_1.jsonl",
                 "--out", "results/certify.jsonl", "--summary", "metrics/certify.json")
    assert merge.returncode == 0, merge.stderr

    merged = read_certify_records(root / "results" / "certify.jsonl")
    single = read_certify_records(root / "single.jsonl")
    untimed = lambda records: [{**r.to_dict(), "seconds": 0} for r in records]  # noqa: E731
    assert untimed(merged) == untimed(single)
    summary, single_summary = (json.loads((root / name).read_text()) for name in ("metrics/certify.json", "single.json"))
    for key in ("model", "data", "radii", "confidence", "curve", "class_names", "per_class", "clean_accuracy", "noise"):
        assert summary[key] == single_summary[key], key
    assert summary["class_names"] == json.loads((root / "models" / "model.json").read_text())["class_names"]
    assert summary["runtime"]["shards"] == 2

    write_evaluate(root, merged)
    gate = _run(root, "-m", "certification.cli", "gate", "--results", "results/certify.jsonl", "--protocol", "params.yaml",
                "--model-json", "models/model.json", "--out", "metrics/gate.json")
    assert gate.returncode in (0, 1), gate.stderr
    dossier = _run(root, "-m", "pipeline.dossier")
    assert dossier.returncode == 0, dossier.stderr
    verify = _run(root, "-m", "certification.cli", "verify", "dossier/dossier.pdf", "--model", "models/model.onnx")
    assert verify.returncode == 3, verify.stdout + verify.stderr  # every check holds; development PKI: exit 3
    evidence = json.loads((root / "dossier" / "evidence.json").read_text())
    assert evidence["certify"]["curve"] == summary["curve"]


def test_merge_without_shard_summaries_names_the_fix(tmp_path: Path) -> None:
    root = make_outputs(tmp_path / "project")
    _certify(root, "shard_0.jsonl", "--shard", "0/1")
    merge = _run(root, "-m", "certification.cli", "merge", "shard_0.jsonl", "--out", "merged.jsonl", "--summary", "merged.json")
    assert merge.returncode == 2
    assert "shard_0.json: summary of shard shard_0.jsonl not found; certify each shard with --summary" in merge.stderr
    assert not (root / "merged.jsonl").exists() and not (root / "merged.json").exists()
