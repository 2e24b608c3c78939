"""The certified-accuracy plot marks r*: `dvc plots show --json` renders the custom template
(.dvc/plots/certified_accuracy_r_star.json) with the gate stage's plots/gate_radius.csv, keeping the axis titles."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from certification.gate_io import GATE_MARKER_COLUMNS, gate_marker_csv
from certification.summary import curve_csv
from pipeline import layout
from support import REPO
from support.dvc_project import DVC, env_for, run

pytestmark = pytest.mark.skipif(not DVC.is_file(), reason="needs dvc beside the Python interpreter")

GATE = {"radius": 0.375, "criteria": [{"name": "certified_accuracy", "threshold": 0.6, "bound": 0.55, "estimate": 0.62},
                                      {"name": "clean_accuracy", "threshold": 0.7, "bound": 0.8, "estimate": 0.85}]}
CURVE = [{"radius": r, "certified_accuracy": a, "lower_bound": a - 0.05} for r, a in ((0.0, 0.9), (0.375, 0.62), (0.75, 0.2))]


def test_marker_row_is_the_gates_radius_and_threshold() -> None:
    header, row, end = gate_marker_csv(GATE).split("\n")
    assert header.split(",") == list(GATE_MARKER_COLUMNS) and end == ""
    assert [float(v) for v in row.split(",")] == [0.375, 0.6, 0.55, 0.62]
    no_criterion = gate_marker_csv({"radius": 0.5, "criteria": []}).split("\n")[1]
    assert no_criterion == "0.5,,,"


def test_dvc_plots_show_draws_a_rule_at_r_star(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    document = yaml.safe_load((REPO / "params.yaml").read_text())
    document["gate"]["radius"] = GATE["radius"]
    (root / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    env = env_for(root)
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"]):
        assert run(cmd, root, env).returncode == 0
    shutil.copytree(REPO / ".dvc/plots", root / ".dvc/plots")
    (root / "plots").mkdir()
    (root / layout.CERTIFY_CURVE).write_text(curve_csv(CURVE))
    (root / layout.GATE_MARKER).write_text(gate_marker_csv(GATE))
    shown = run([DVC, "plots", "show", "--json", "certified-accuracy-vs-radius"], root, env)
    assert shown.returncode == 0, shown.stdout[-2000:] + shown.stderr[-2000:]
    (entry,) = json.loads(shown.stdout)["data"]["certified-accuracy-vs-radius"]
    spec = entry["content"]
    plot = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    definition = next(p["certified-accuracy-vs-radius"] for p in plot if isinstance(p, dict) and "certified-accuracy-vs-radius" in p)
    assert spec["encoding"]["x"] == {"field": "radius", "type": "quantitative", "title": definition["x_label"]}
    assert f"r* = {GATE['radius']}" in spec["title"]["text"]
    curves, rule, point, label = spec["layer"]
    assert curves["mark"]["type"] == "line" and curves["encoding"]["y"]["title"] == definition["y_label"]
    assert rule["mark"]["type"] == "rule" and point["encoding"]["y"]["field"] == "threshold"
    assert {layer["encoding"]["y"]["title"] for layer in (curves, point, label)} == {definition["y_label"]}
    markers = [row for row in spec["data"]["values"] if row.get("threshold")]
    assert [(float(m["radius"]), float(m["threshold"])) for m in markers] == [(0.375, 0.6)]
    lines = {row["filename::field"] for row in spec["data"]["values"] if not row.get("threshold")}
    assert lines == {"certify_curve.csv::certified_accuracy", "certify_curve.csv::lower_bound"}
