"""dvc.yaml, pipeline/layout.py and the stages' imports say the same thing, so `dvc repro` reruns what a change touches."""
from __future__ import annotations

import pytest
import yaml

from pipeline import layout
from support.imports import REPO, import_closure

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _declared_outputs(stage: dict) -> set[str]:
    paths = set()
    for key in ("outs", "metrics", "plots"):
        for entry in stage.get(key, []):
            paths.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def test_every_stage_of_the_layout_is_in_dvc_yaml() -> None:
    assert list(DVC) == list(layout.STAGE_OUTPUTS)


@pytest.mark.parametrize("stage", list(layout.STAGE_OUTPUTS))
def test_outputs_and_data_deps_match_the_layout(stage: str) -> None:
    assert _declared_outputs(DVC[stage]) == {p.as_posix() for p in layout.STAGE_OUTPUTS[stage]}
    deps = DVC[stage]["deps"]
    data = {d for d in deps if not d.startswith(("certification", "pipeline"))}
    assert data == {p.as_posix() for p in layout.STAGE_INPUTS[stage]}
    assert DVC[stage]["cmd"] == f"python -m pipeline.{stage}"


@pytest.mark.parametrize("stage", list(layout.STAGE_OUTPUTS))
def test_code_deps_cover_every_file_the_stage_imports(stage: str) -> None:
    """A change to any imported file must rerun the stage: each file of the import closure (function-level
    imports included) is a dep or lies in a dep folder."""
    deps = DVC[stage]["deps"]
    imported = sorted(p.relative_to(REPO).as_posix() for p in import_closure(f"pipeline.{stage}"))
    missing = [path for path in imported if not _covered(path, deps)]
    assert not missing, f"stage {stage} imports files its dvc.yaml deps do not list: {missing}"


def test_stages_do_not_import_each_other() -> None:
    stages = {f"pipeline.{name}" for name in layout.STAGE_OUTPUTS}
    for stage in stages:
        others = {p for p in import_closure(stage) if p.stem in layout.STAGE_OUTPUTS and p.parent.name == "pipeline"}
        assert others == {REPO / (stage.replace(".", "/") + ".py")}, stage


def test_closure_sees_function_level_imports() -> None:
    """The check would catch the old gap: the gate stage runs the sequential engine from inside a function."""
    closure = {p.relative_to(REPO).as_posix() for p in import_closure("pipeline.gate")}
    assert {"certification/sequential.py", "certification/sequential_run.py", "certification/smoothing.py"} <= closure


def test_the_test_split_is_sealed_until_certify() -> None:
    """Only certify and the stages after it may read data/test.npz (train and export use the validation split)."""
    stages = list(layout.STAGE_OUTPUTS)
    for stage in stages[: stages.index("certify")]:
        assert layout.TEST_SPLIT.as_posix() not in DVC[stage]["deps"], stage
        assert layout.TEST_SPLIT not in layout.STAGE_INPUTS[stage], stage
