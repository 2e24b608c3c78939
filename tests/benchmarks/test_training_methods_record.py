"""benchmarks/training_methods.py writes its record through the one writer (certification.method_benchmark): a tiny
real run (1 epoch, 64 training images, n = 20) reads back through the reader, names the data by the datasheet's
hashes and each trained ONNX model by its SHA-256, and prints the target rule's decision."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from certification.fileio import read_json
from certification.method_benchmark import apply_target, read_method_record
from support import REPO


def test_the_benchmark_writes_a_record_the_reader_accepts(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(n_train=64, n_val=32, n_test=16, image_size=28)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "SMOOTHCERT_PARAMS": "params.yaml", "SMOOTHCERT_TRACKING": "off",
           "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    data = subprocess.run([sys.executable, "-m", "pipeline.data"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert data.returncode == 0, data.stderr
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "training_methods.py"), "--params", "params.yaml", "--data", "data",
         "--methods", "gaussian,consistency", "--sigmas", "0.25", "--epochs", "1", "--n", "20", "--n0", "5",
         "--examples", "8", "--threads", "1", "--out", "record.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = read_method_record(tmp_path / "record.json")
    sheet = read_json(tmp_path / "data" / "datasheet.json")
    assert record.data_sha256 == {name: s["sha256"] for name, s in sheet["splits"].items()}
    assert [(r.method, r.sigma, r.epochs, r.n_examples) for r in record.rows] == [("gaussian", 0.25, 1, 8), ("consistency", 0.25, 1, 8)]
    assert record.rows[1].hyperparameters == {"m": 2, "lambda": 5.0, "eta": 0.5} == record.params_hyperparameters["consistency"]
    assert len({r.model_sha256 for r in record.rows}) == 2 and not record.partial
    assert not (tmp_path / "record.json.partial").exists()  # the progress file is gone once the record is complete
    assert (record.settings.n, record.settings.n0, record.settings.examples, record.settings.gate_radius) == (20, 5, 8, 0.25)
    pick = apply_target(record, 0.25).pick
    assert f"target rule at the shipped sigma 0.25: best candidate consistency, picks {pick}" in done.stdout
