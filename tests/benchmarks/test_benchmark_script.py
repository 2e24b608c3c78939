"""The throughput benchmark runs end to end and reports every row (a smoke test: tiny sizes, no timing claims)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from support import REPO

ROOT = REPO


def test_certify_throughput_writes_every_row_and_ratio(tmp_path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "certify_throughput.py"), "--sizes", "16", "--providers", "cpu",
         "--examples", "1", "--n0", "10", "--n", "300", "--batch-size", "100", "--repeats", "1", "--min-seconds", "0",
         "--skip-memory", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["image_size"] == 16 and row["provider"] == "CPUExecutionProvider" and row["examples"] == 1
    rates = row["samples_per_second"]["median"]
    assert set(rates) == {"ceiling", "engine", "engine_serial", "engine_ziggurat", "engine_predrawn", "reference"}
    assert all(rate > 0 and math.isfinite(rate) for rate in rates.values())
    for key in ("engine_over_ceiling", "engine_predrawn_over_ceiling", "engine_over_reference"):
        assert row[key] > 0 and math.isfinite(row[key])
    assert "b/a =" in done.stdout and "b/c =" in done.stdout and report["machine"]["usable_cpus"] >= 1
