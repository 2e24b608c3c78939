"""Peak memory of certifying one 64x64 image at n = 10,000 and at n = 100,000: it must not grow with n.

Each measurement runs in a fresh child process that imports only the certification stack (no torch), and
reports its own peak resident memory (VmHWM) and numpy's traced peak. Run by ``certify_throughput.py`` unless
``--skip-memory``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MEMORY_IMAGE_SIZE = 64

MEMORY_CHILD = r"""
import json, sys, time, tracemalloc
import numpy as np
sys.path.insert(0, sys.argv[1])
from certification.smoothing import SmoothedClassifier

def status(key):  # VmHWM: this process's peak resident memory (ru_maxrss would include the forked parent's)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
clf = SmoothedClassifier.from_onnx(sys.argv[2], 0.25, batch_size=int(sys.argv[4]), threads=int(sys.argv[5]), provider="cpu")
x = np.random.default_rng(0).random((3, int(sys.argv[6]), int(sys.argv[6])), dtype=np.float32)
loaded = status("VmHWM")
tracemalloc.start()
t = time.perf_counter()
clf.certify(x, 100, int(sys.argv[3]), 0.001, seed=0)
seconds = time.perf_counter() - t
traced = tracemalloc.get_traced_memory()[1]
print(json.dumps({"n": int(sys.argv[3]), "peak_rss_mib": status("VmHWM"), "rss_after_model_load_mib": loaded,
                  "tracemalloc_peak_numpy_mib": traced / 2**20, "seconds": seconds}))
"""


def measure_memory(model: Path, size: int, batch_size: int, threads: int) -> list[dict[str, Any]]:
    """One row per n: peak RSS and numpy peak (MiB), RSS after loading the model, seconds; each row is printed."""
    rows = []
    for n in (10_000, 100_000):
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(ROOT), str(model), str(n), str(batch_size), str(threads), str(size)],
                             capture_output=True, text=True, check=True)
        row = {"image_size": size, **json.loads(out.stdout.strip().splitlines()[-1])}
        print(f"memory {size}x{size} n={n:,}: peak RSS {row['peak_rss_mib']:.0f} MiB (after model load "
              f"{row['rss_after_model_load_mib']:.0f} MiB), numpy peak {row['tracemalloc_peak_numpy_mib']:.0f} MiB, "
              f"{row['seconds']:.1f} s", flush=True)
        rows.append(row)
    return rows
