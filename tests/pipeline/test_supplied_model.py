"""The supplied-model pipeline (supplied_model/dvc.yaml, written by `python -m pipeline.supplied`): a user's ONNX
file (params model.path) is certified, evaluated, gated and signed without the train and export stages; the written
dvc.yaml agrees with dvc.yaml, the layout and the stages' imports.

The run drives every stage's main() in one interpreter from supplied_model/ with the environment its dvc.yaml sets
(one process start instead of eight keeps the test small); `dvc repro --dry` shows what DVC itself would run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pypdf import PdfReader

from certification.fileio import sha256_file
from pipeline import layout
from pipeline.supplied import write_supplied_pipeline
from support import REPO
from support.dvc_project import DVC, env_for, make_clone, run
from support.imports import import_closure
from support.user_model import nhwc_user_model

TRAINING = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
ENV = "PYTHONPATH=.. SMOOTHCERT_PARAMS=../params.yaml"
TINY = {
    "data": {"image_size": 28, "n_train": 40, "n_val": 40, "n_test": 40},
    "model": {"path": "user_model.onnx", "sigma": 0.25},
    "certify": {"n0": 20, "n": 200, "alpha": 0.01, "max_examples": 10},
    "evaluate": {"max_examples": 4, "predict_n": 40, "attack_examples": 3, "attack_steps": 2, "attack_samples": 2,
                 "confirm_n": 100, "least_robust": 3},
    "deploy": {"n": 40, "latency_repeats": 1},
    "gate": {"min_certified_accuracy_lower": 0.0, "min_malignant_recall_lower": 0.0, "max_abstention_rate": 1.0,
             "min_clean_accuracy": 0.0},
}
DRIVER = ("from pipeline import data, model, protocol, certify, evaluate, gate, dossier, verdict\n"
          "for stage in (data, model, protocol, certify, evaluate, gate, dossier, verdict):\n"
          "    assert not stage.main(), stage.__name__\n")


def _declared(stage: dict) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else e for key in ("outs", "metrics", "plots") for e in stage.get(key, [])}


def test_the_supplied_pipeline_has_no_training_and_matches_the_layout(tmp_path: Path) -> None:
    shutil.copy2(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    written = write_supplied_pipeline(tmp_path)
    assert written == tmp_path / "supplied_model/dvc.yaml" and "/models/" in (tmp_path / "supplied_model/.gitignore").read_text()
    SUPPLIED = yaml.safe_load(written.read_text(encoding="utf-8"))["stages"]
    assert tuple(SUPPLIED) == layout.SUPPLIED_STAGES and "train" not in SUPPLIED and "export" not in SUPPLIED
    for name, stage in SUPPLIED.items():
        assert _declared(stage) == {p.as_posix() for p in layout.SUPPLIED_STAGE_OUTPUTS[name]}, name
        assert "metrics" not in stage, name  # the training pipeline's `dvc metrics show` lists one file
        data = {d for d in stage["deps"] if not d.startswith("../")}
        assert data == {p.as_posix() for p in layout.SUPPLIED_STAGE_INPUTS[name] if p != layout.TEMPLATES}, name
        assert stage["cmd"].startswith(ENV) and stage["cmd"].endswith(f"python -m pipeline.{name}"), name
        (params,) = stage["params"]
        assert list(params) == ["../params.yaml"], name
        if name != "model":
            assert params["../params.yaml"] == TRAINING[name].get("params", []), name
        imported = sorted("../" + p.relative_to(REPO).as_posix() for p in import_closure(f"pipeline.{name}"))
        missing = [p for p in imported if not any(p == d or p.startswith(d.rstrip("/") + "/") for d in stage["deps"])]
        assert not missing, f"stage {name} imports files its deps miss: {missing}"
    assert "SMOOTHCERT_TEMPLATES=../dossier_templates" in SUPPLIED["dossier"]["cmd"]
    assert "../dossier_templates" in SUPPLIED["dossier"]["deps"]
    assert "model.path" in TRAINING["train"]["params"]  # setting it reruns train, which then refuses


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("supplied") / "repo"
    root.mkdir()
    make_clone(root, TINY)
    nhwc_user_model(root / "user_model.onnx", 28, 4)
    write_supplied_pipeline(root)
    env = env_for(root, SMOOTHCERT_TRACKING="off", PYTHONPATH="..", SMOOTHCERT_PARAMS="../params.yaml",
                  SMOOTHCERT_TEMPLATES="../dossier_templates")
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=root / "supplied_model", env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root, env


@pytest.mark.slow
def test_a_supplied_nhwc_model_is_certified_and_signed_without_training(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    out = root / "supplied_model"
    user_sha = sha256_file(root / "user_model.onnx")
    card = json.loads((out / layout.MODEL_CARD).read_text())
    assert card["sha256"] == user_sha == sha256_file(out / layout.MODEL) and card["supplied"]["source"] == "user_model.onnx"
    assert card["supplied"]["trained_by_pipeline"] is False and card["input_shape"] == [None, 3, 28, 28]
    assert any("NHWC" in step for step in card["supplied"]["input_adaptation"])
    assert json.loads((out / layout.GATE_METRICS).read_text())["model_sha256"] == user_sha
    assert not list(root.rglob("model.pt")) and not (out / layout.TRAIN_METRICS).exists()
    evidence = json.loads((out / layout.EVIDENCE).read_text())
    assert evidence["train"] is None and evidence["hashes"]["model_sha256"] == user_sha
    assert "spsa" in evidence["evaluate"]["attack"]["method"]
    text = " ".join(" ".join(page.extract_text().split()) for page in PdfReader(out / layout.DOSSIER_SIGNED).pages)
    assert "SUPPLIED by the user, not trained or exported by this pipeline" in text and user_sha in text
    assert "Training record" not in text and "was trained with the" not in text and "portable kernels" not in text


@pytest.mark.slow
def test_dvc_runs_no_training_for_the_supplied_model_and_train_refuses(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    dvc_env = env_for(root, SMOOTHCERT_TRACKING="off")
    dry = run([DVC, "repro", "--dry", "-f", "supplied_model/dvc.yaml"], root, dvc_env)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    stages = [line.split("'")[1] for line in dry.stdout.splitlines() if line.startswith("Running stage")]
    assert sorted(stages) == sorted(f"supplied_model/dvc.yaml:{name}" for name in layout.SUPPLIED_STAGES)
    refused = subprocess.run([sys.executable, "-m", "pipeline.train"], cwd=root, env=dvc_env, capture_output=True, text=True)
    assert refused.returncode == 2 and "dvc repro supplied_model/dvc.yaml" in refused.stderr
    assert not (root / layout.CHECKPOINT).exists()
