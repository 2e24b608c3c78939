"""Write the supplied-model pipeline, supplied_model/dvc.yaml: certify YOUR ONNX file (params ``model.path``) with
the training pipeline's stages, the stage ``model`` (pipeline/model.py) standing in for train and export.

    python -m pipeline.supplied          # once (again after dvc.yaml changed); commit the file if you keep it
    dvc repro supplied_model/dvc.yaml

DVC cannot skip stages on a condition, so the supplied model gets a second pipeline file in its own folder: each
stage runs there (outputs supplied_model/{data,models,results,metrics,plots,dossier}, never the training pipeline's)
with the repository's code (PYTHONPATH=..), params.yaml (SMOOTHCERT_PARAMS=../params.yaml) and dossier words
(SMOOTHCERT_TEMPLATES=../dossier_templates). The file is derived from dvc.yaml (same params, code deps under ../, data
deps without the training outputs) and pipeline/layout.py, so the two cannot drift apart; it is written on request
rather than shipped, because DVC lists every dvc.yaml of the repository in `dvc status`. The verdict's
metrics/headline.json is a plain output there, so that `dvc metrics show` of the training pipeline stays one file.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from certification.fileio import write_text_atomic
from certification.yaml_io import read_yaml
from pipeline import layout

FOLDER = Path("supplied_model")
PIPELINE = FOLDER / "dvc.yaml"
GITIGNORE = FOLDER / ".gitignore"
ENV = "PYTHONPATH=.. SMOOTHCERT_PARAMS=../params.yaml"
#: code deps of the stage ``model`` (tests/pipeline/test_supplied_model.py checks them against its imports)
MODEL_CODE = ("pipeline/__init__.py", "pipeline/layout.py", "pipeline/model.py", "pipeline/stage.py", "pipeline/tracking.py", "pipeline/mlflow_store.py",
              "certification/__init__.py", "certification/dataset_io.py", "certification/edge_cnn.py",
              "certification/errors.py", "certification/export_run.py", "certification/fileio.py", "certification/lighting.py",
              "certification/model_card.py", "certification/model_import.py", "certification/onnx_export.py", "certification/onnx_layout.py",
              "certification/onnx_model.py", "certification/onnx_rewrites.py", "certification/platform_info.py",
              "certification/progress.py", "certification/qat.py", "certification/training.py",
              "certification/training_losses.py", "certification/yaml_io.py")
HEADER = """# The supplied-model pipeline, written by `python -m pipeline.supplied` from dvc.yaml (do not edit: rerun it).
# Certifies, evaluates, gates and signs a dossier for the ONNX file named by params.yaml `model.path`, without the
# train and export stages. From the repository root: dvc repro supplied_model/dvc.yaml
# DVC tracks `model.path`, not the file's bytes: after replacing the file in place run
#   dvc repro -f -s supplied_model/dvc.yaml:model
"""
IGNORED = "# outputs of the supplied-model pipeline and its development signing key\n/data/\n/models/\n/results/\n/dossier/\n/.smoothcert/\n*.partial\n"


def _is_code(dep: str) -> bool:
    return dep.startswith(("pipeline/", "certification/")) or dep == layout.TEMPLATES.as_posix()


def supplied_stages(training: dict[str, Any]) -> dict[str, Any]:
    """The supplied-model stages derived from the training pipeline's ``stages`` mapping (dvc.yaml)."""
    stages: dict[str, Any] = {}
    for name in layout.SUPPLIED_STAGES:
        if name == "model":
            deps = [f"../{d}" for d in MODEL_CODE] + [p.as_posix() for p in layout.SUPPLIED_STAGE_INPUTS["model"]]
            params, outs = ["model"], [layout.MODEL.as_posix(), {layout.MODEL_CARD.as_posix(): {"cache": False}},
                                       {layout.EXPORT_METRICS.as_posix(): {"cache": False}}]
        else:
            stage = training[name]
            keep = {p.as_posix() for p in layout.SUPPLIED_STAGE_INPUTS[name]}
            deps = [f"../{d}" if _is_code(d) else d for d in stage["deps"] if _is_code(d) or d in keep]
            params, outs = list(stage.get("params", [])), list(stage.get("outs", [])) + list(stage.get("metrics", []))
        cmd = f"{ENV}{' SMOOTHCERT_TEMPLATES=../' + layout.TEMPLATES.as_posix() if name == 'dossier' else ''} python -m pipeline.{name}"
        stages[name] = {"cmd": cmd, "deps": deps, "params": [{"../params.yaml": params}], "outs": outs}
    return stages


def _yaml(stages: dict[str, Any]) -> str:
    import yaml

    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120)


def write_supplied_pipeline(root: Path = Path(".")) -> Path:
    """Write ``root``/supplied_model/dvc.yaml (and its .gitignore) from ``root``/dvc.yaml; returns the file."""
    training = read_yaml(root / "dvc.yaml")["stages"]
    write_text_atomic(root / PIPELINE, _yaml(supplied_stages(training)))
    write_text_atomic(root / GITIGNORE, IGNORED)
    return root / PIPELINE


def main() -> int:
    path = write_supplied_pipeline()
    print(f"supplied: wrote {path} (from dvc.yaml); set model.path in params.yaml, then: dvc repro {path.as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
