"""`smoothcert gate` exit codes, the gate and verdict pipeline stages, and the CI workflow file."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from support.prespec import freeze_project_protocol

from certification.cli import main as cli_main
from certification.certify_run import noise_record
from certification.gate import Protocol, protocol_sha256
from certification.records import CertifyRecord
from certification.summary import certify_metrics, write_certify_metrics
from support.dossier_outputs import RUNTIME, write_onnx
from certification.fileio import sha256_file
from support.oracle import write_split
from support.gate_rows import CLASSES, PROTOCOL, good_rows, with_changes
from support import REPO

REPO_ROOT = REPO
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "robustness-gate.yml"
_MODEL_DIR = Path(tempfile.mkdtemp(prefix="gate-model-"))
write_onnx(_MODEL_DIR / "model.onnx")
MODEL_SHA = sha256_file(_MODEL_DIR / "model.onnx")  # the tiny real model every project below ships
CERTIFY_PARAMS = {"sigma": 0.25, "n0": 100, "n": 10000, "alpha": 0.001, "batch_size": 1000, "max_examples": 0,
                  "seed": 3, "confidence": 0.95, "radii": [0.0, 0.25]}


def write_project(root: Path, rows: list[dict], gate: dict | None = None, certified_sha: str = MODEL_SHA) -> Path:
    """A project folder with params.yaml, results/certify.jsonl, metrics/certify.json and models/model.json."""
    (root / "results").mkdir(parents=True, exist_ok=True)
    (root / "metrics").mkdir(exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    shutil.copy(_MODEL_DIR / "model.onnx", root / "models" / "model.onnx")
    (root / "data").mkdir(exist_ok=True)
    total = max([r["index"] for r in rows], default=-1) + 1
    labels = np.zeros(total, dtype=np.int64)
    for r in rows:
        labels[r["index"]] = r["label"]
    write_split(root / "data" / "test.npz", np.zeros((total, 8, 8, 3), np.uint8), labels)
    data_sha = sha256_file(root / "data" / "test.npz")
    rows = [{**r, "model_sha256": certified_sha, "data_sha256": data_sha} for r in rows]
    (root / "params.yaml").write_text(yaml.safe_dump({"certify": CERTIFY_PARAMS, "gate": gate or PROTOCOL}))
    (root / "results" / "certify.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if rows:
        records = [CertifyRecord.from_dict(r) for r in rows]
        write_certify_metrics(root / "metrics" / "certify.json", certify_metrics(
            records, model={"path": "models/model.onnx", "sha256": certified_sha},
            data={"path": "data/test.npz", "sha256": data_sha, "n_examples_total": len(rows)}, max_examples=0,
            radii=[0.0, 0.25], confidence=0.95, class_names=CLASSES, runtime=RUNTIME, noise=noise_record(10100, (3, 8, 8))))
    (root / "models" / "model.json").write_text(json.dumps(
        {"path": "models/model.onnx", "sha256": MODEL_SHA, "class_names": CLASSES,
         "malignant_classes": ["melanoma", "basal_cell_carcinoma"]}))
    freeze_project_protocol(root)
    return root


def gate_args(root: Path, results: str = "results/certify.jsonl", protocol: str = "params.yaml") -> list[str]:
    return ["gate", "--results", str(root / results), "--protocol", str(root / protocol),
            "--model-json", str(root / "models/model.json"), "--certify-json", str(root / "metrics/certify.json")]


def test_accept_exits_0_and_writes_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path, good_rows())
    assert cli_main(gate_args(root) + ["--out", str(root / "metrics/gate.json")]) == 0
    out = capsys.readouterr().out
    assert "verdict: ACCEPT" in out and "certified_recall_melanoma" in out
    verdict = json.loads((root / "metrics/gate.json").read_text())
    assert verdict["verdict"] == "ACCEPT" and verdict["model_sha256"] == MODEL_SHA
    assert verdict["protocol_sha256"] == protocol_sha256(Protocol.from_dict(PROTOCOL))


def test_reject_exits_1_and_names_the_failed_criteria(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path, with_changes(good_rows(), range(100, 140), radius=0.1))
    assert cli_main(gate_args(root)) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("REJECTED: certified_recall_melanoma: lower bound ")


def test_protocol_from_json_file(tmp_path: Path) -> None:
    root = write_project(tmp_path, good_rows())
    (root / "protocol.json").write_text(json.dumps({**PROTOCOL, "min_clean_accuracy": 0.999}))
    assert cli_main(gate_args(root, protocol="protocol.json")) == 1
    (root / "gate.json").write_text(json.dumps({"protocol": PROTOCOL, "verdict": "ACCEPT"}))
    assert cli_main(gate_args(root, protocol="gate.json") + ["--section", "protocol"]) == 0


BAD_INPUTS = {
    "missing results": (lambda root: (root / "results/certify.jsonl").unlink(), "not found"),
    "empty results": (lambda root: (root / "results/certify.jsonl").write_text(""), "no certification records"),
    "unknown protocol key": (lambda root: (root / "params.yaml").write_text(yaml.safe_dump(
        {"gate": {**PROTOCOL, "min_acc": 0.1}})), "unknown protocol key 'min_acc'"),
    "missing section": (lambda root: (root / "params.yaml").write_text("certify: {}\n"), "missing section 'gate:'"),
    "model hash mismatch": (lambda root: write_project(root, good_rows(), certified_sha="ef" * 32), "model hash mismatch"),
    "invalid model json": (lambda root: (root / "models/model.json").write_text("{"), "not valid JSON"),
    "row count mismatch": (lambda root: (root / "results/certify.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in good_rows()[:3])), "reports 200 examples"),
    "not a summary": (lambda root: (root / "metrics/certify.json").write_text(json.dumps(
        {"model": {"sha256": MODEL_SHA}, "n_examples": 3, "params": {"alpha": 0.001}})), "not a certification summary"),
    "mode mismatch": (lambda root: (root / "params.yaml").write_text(yaml.safe_dump(
        {"gate": {**PROTOCOL, "mode": "sequential"}})), "mode is 'sequential'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path, good_rows())
    breakage, message = BAD_INPUTS[case]
    breakage(root)
    assert cli_main(gate_args(root) + ["--out", str(root / "metrics/gate.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smoothcert gate: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (root / "metrics/gate.json").exists()


def test_console_script_exit_codes(tmp_path: Path) -> None:
    """The installed `smoothcert` executable, as CI runs it."""
    exe = Path(sys.executable).parent / "smoothcert"
    accept = write_project(tmp_path / "accept", good_rows())
    reject = write_project(tmp_path / "reject", with_changes(good_rows(), range(0, 50), prediction=-1))
    codes = [subprocess.run([str(exe), *gate_args(root)], capture_output=True, text=True).returncode
             for root in (accept, reject)]
    broken = subprocess.run([str(exe), *gate_args(accept, results="results/none.jsonl")], capture_output=True, text=True)
    assert codes == [0, 1] and broken.returncode == 2


def run_stage(module: str, cwd: Path, tracking: bool = False) -> subprocess.CompletedProcess[str]:
    """A stage as DVC runs it; MLflow tracking (to the test's temporary store) only where asked, for speed."""
    env = {**os.environ, "SMOOTHCERT_TRACKING": "on" if tracking else "off", "SMOOTHCERT_FAIL_ON_REJECT": "1"}  # as CI
    return subprocess.run([sys.executable, "-m", module], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("accepted", [True, False])
def test_gate_stage_always_exits_0_and_verdict_stage_decides(tmp_path: Path, accepted: bool) -> None:
    rows = good_rows() if accepted else with_changes(with_changes(good_rows(), range(0, 50), prediction=-1),
                                                     range(100, 140), radius=0.1)
    root = write_project(tmp_path, rows)
    gate = run_stage("pipeline.gate", root, tracking=not accepted)
    assert gate.returncode == 0, gate.stderr
    verdict = json.loads((root / "metrics/gate.json").read_text())
    assert verdict["verdict"] == ("ACCEPT" if accepted else "REJECT") and verdict["mode"] == "fixed"
    decisions = [json.loads(line) for line in (root / "results/gate.jsonl").read_text().splitlines()]
    assert len(decisions) == 200 and all(d["evaluations"] == 10100 and d["radius_threshold"] == 0.25 for d in decisions)
    # the CLI judges the stage's per-example decisions exactly as the stage did
    assert cli_main(gate_args(root, results="results/gate.jsonl")) == (0 if accepted else 1)

    final = run_stage("pipeline.verdict", root, tracking=not accepted)
    lines = final.stdout.strip().splitlines()
    if accepted:
        assert final.returncode == 0 and lines[-1].startswith("ACCEPTED")
    else:
        assert final.returncode == 1
        failed = verdict["failed"]
        assert failed == ["certified_accuracy", "certified_recall_melanoma", "abstention_rate"]
        assert [line.split(":")[1].strip() for line in lines[-len(failed):]] == failed
        assert all(line.startswith("REJECTED: ") for line in lines[-len(failed):])


def test_verdict_stage_refuses_a_verdict_about_another_model(tmp_path: Path) -> None:
    root = write_project(tmp_path, good_rows())
    assert run_stage("pipeline.gate", root).returncode == 0
    model = json.loads((root / "models/model.json").read_text())
    (root / "models/model.json").write_text(json.dumps({**model, "sha256": "00" * 32}))
    final = run_stage("pipeline.verdict", root)
    assert final.returncode == 2 and "rerun the gate stage" in final.stderr


def test_decision_rows_of_part_of_the_run_or_with_forged_labels_are_refused(tmp_path: Path, capsys) -> None:
    """The README's CI command judges results/gate.jsonl: a subset of it (e.g. only the certified rows) or rows whose
    label and 'correct' were changed together must not ACCEPT."""
    root = write_project(tmp_path, with_changes(good_rows(), range(0, 60), radius=0.1))
    assert run_stage("pipeline.gate", root).returncode == 0
    decisions = (root / "results/gate.jsonl").read_text().splitlines()
    certified = [line for line in decisions if json.loads(line)["certified"]]
    (root / "results/gate.jsonl").write_text("\n".join(certified) + "\n")
    assert cli_main(gate_args(root, results="results/gate.jsonl")) == 2
    assert f"decides {len(certified)} examples but the certification run" in capsys.readouterr().err
    rows = [json.loads(line) for line in decisions]
    rows[0] = {**rows[0], "label": 1, "prediction": 1, "correct": True}  # forged: label and correct changed together
    (root / "results/gate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli_main(gate_args(root, results="results/gate.jsonl") + ["--data", str(root / "data/test.npz")]) == 2
    assert "example 0 has label 1 but the test split says 0" in capsys.readouterr().err


def test_gate_stage_refuses_a_swapped_model_file(tmp_path: Path) -> None:
    """The gate hashes the ONNX file it judges: another file at models/model.onnx is bad input, not a verdict."""
    root = write_project(tmp_path, good_rows())
    write_onnx(root / "models" / "model.onnx", seed=1)
    stage = run_stage("pipeline.gate", root)
    assert stage.returncode == 2 and "the model was swapped or re-exported" in stage.stderr
    assert not (root / "metrics/gate.json").exists()


def test_gate_stage_bad_input_exits_2(tmp_path: Path) -> None:
    root = write_project(tmp_path, good_rows(), gate={**PROTOCOL, "radius": -1})
    stage = run_stage("pipeline.gate", root)
    assert stage.returncode == 2 and "'radius'" in stage.stderr
    assert not (root / "metrics/gate.json").exists()


# ------------------------------------------------------------------------------------------- CI workflow
def _workflow_commands() -> list[str]:
    """The install, pipeline and gate commands the workflow runs (without output redirection), split at &&."""
    document = yaml.safe_load(WORKFLOW.read_text())
    commands = []
    for step in document["jobs"]["robustness-gate"]["steps"]:
        for line in str(step.get("run", "")).splitlines():
            for command in line.strip().split(" && "):
                if re.match(r"(pip|dvc|smoothcert) ", command):
                    commands.append(re.split(r" (?:>|>>|\|\|) ", command)[0])
    return commands


def test_workflow_is_valid_and_gates_on_smoothcert() -> None:
    document = yaml.safe_load(WORKFLOW.read_text())
    triggers = document.get("on", document.get(True))
    assert "pull_request" in triggers
    steps = document["jobs"]["robustness-gate"]["steps"]
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    repro = next(s for s in steps if s.get("run", "").strip() == "dvc repro")
    assert repro["continue-on-error"] is True and repro["id"] == "repro"
    summary = next(s for s in steps if "dvc metrics diff" in s.get("run", ""))
    assert "GITHUB_STEP_SUMMARY" in summary["run"]
    gate = next(s for s in steps if "smoothcert gate" in s.get("run", ""))
    assert "continue-on-error" not in gate and "exit $status" in gate["run"]
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert "dossier/" in upload["with"]["path"] and upload["if"] == "always()"
    assert repro["env"]["SMOOTHCERT_FAIL_ON_REJECT"] == "1"
    assert _workflow_commands() == [
        "pip install -r requirements.lock",
        "pip install --no-deps -e .",
        "pip install --no-deps -r requirements-s3.lock",
        "dvc pull --allow-missing",
        "dvc repro",
        'smoothcert verify dossier/dossier.pdf --trust-root "$TRUST_ROOT"',
        'dvc plots diff "origin/$BASE" --out plots-diff --targets plots/certify_curve.csv plots/evaluate_attack_curve.csv',
        'dvc metrics diff "origin/$BASE" --md',
        "smoothcert gate --results results/gate.jsonl --protocol params.yaml --model-json models/model.json",
    ]


def test_workflow_gate_command_parses() -> None:
    """The gate command of the workflow is accepted by smoothcert's own parser."""
    from certification.cli import build_parser

    gate = _workflow_commands()[-1].split()[1:]
    args = build_parser().parse_args(gate)
    assert args.command == "gate" and str(args.results) == "results/gate.jsonl"


def test_readme_documents_the_workflow_commands() -> None:
    readme = REPO_ROOT / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is not written yet")
    text = readme.read_text()
    assert "robustness-gate.yml" in text and "require status checks" in " ".join(text.split()).lower()
    missing = [c for c in _workflow_commands() if c not in text]
    assert not missing, f"README.md does not show these workflow commands: {missing}"
