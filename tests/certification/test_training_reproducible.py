"""Portable training: the same weights whatever ISA code paths this CPU offers torch, oneDNN, MKL and numpy.

Each run trains a small model in a fresh process (the environment must be set before torch starts) and hashes its
state_dict. A different machine is simulated by the overrides those libraries honour (lower oneDNN and MKL
instruction sets, numpy without AVX-512); the controls show the check can fail: without portable kernels, torch's
AVX2 and baseline kernels give different weights, and so do another MKL reproducibility branch and another thread
count, which is why both are pinned. Across CPU vendors the weights are not claimed (an AMD EPYC and an Intel Xeon
gave different weights; no override here reproduces that, see README, Reproducibility).
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import pytest

from certification.platform_info import PORTABLE_TORCH_ENVIRONMENT
from support import REPO

pytestmark = pytest.mark.slow

_CHILD = """
import hashlib, io, json, sys
import torch
from certification.data.synthetic import generate_split
from certification.training import TrainConfig, train_model
from certification.platform_info import torch_capability
portable, threads = sys.argv[1] == "portable", int(sys.argv[2])
train, val = generate_split(600, 28, 5, "train"), generate_split(100, 28, 5, "val")
config = TrainConfig(epochs=1, batch_size=64, width=8, seed=3, portable_kernels=portable)
result = train_model(train.images, train.labels, val.images, val.labels, 4, config, threads=threads)
buffer = io.BytesIO()
for name, tensor in sorted(result.model.state_dict().items()):
    buffer.write(name.encode()); buffer.write(tensor.detach().contiguous().numpy().tobytes())
print(json.dumps({"sha256": hashlib.sha256(buffer.getvalue()).hexdigest(), "capability": torch_capability()}))
"""


def _train(mode: str, env: dict[str, str], threads: int = 1) -> dict[str, str]:
    """One torch thread, as every test process here (Makefile): a two-thread OpenMP region spinning against the other
    pytest worker made this training about 12x slower (15 s against 1.3 s; CI timed out at 300 s)."""
    return dict(_train_cached(mode, tuple(sorted(env.items())), threads))


@functools.lru_cache(maxsize=None)
def _train_cached(mode: str, env_items: tuple[tuple[str, str], ...], threads: int) -> tuple[tuple[str, str], ...]:
    """One training run in a fresh process (cached: the tests share the portable baseline run)."""
    env = dict(env_items)
    clean = {k: v for k, v in os.environ.items() if k not in (*PORTABLE_TORCH_ENVIRONMENT, "ONEDNN_MAX_CPU_ISA",
                                                               "MKL_ENABLE_INSTRUCTIONS", "NPY_DISABLE_CPU_FEATURES")}
    done = subprocess.run([sys.executable, "-c", _CHILD, mode, str(threads)], env={**clean, "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return tuple(sorted(json.loads(done.stdout.strip().splitlines()[-1]).items()))


def test_portable_training_gives_the_same_weights_under_other_isa_levels() -> None:
    here = _train("portable", dict(PORTABLE_TORCH_ENVIRONMENT))
    elsewhere = _train("portable", {**PORTABLE_TORCH_ENVIRONMENT, "ONEDNN_MAX_CPU_ISA": "SSE41",
                                    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"})
    assert here["capability"] == elsewhere["capability"] == "DEFAULT"
    assert here["sha256"] == elsewhere["sha256"]


def test_without_portable_kernels_the_isa_level_changes_the_weights() -> None:
    avx2 = _train("native", {"ATEN_CPU_CAPABILITY": "avx2"})
    if avx2["capability"] != "AVX2":
        pytest.skip(f"this CPU offers torch no AVX2 kernels ({avx2['capability']})")
    baseline = _train("native", {"ATEN_CPU_CAPABILITY": "default"})
    assert avx2["sha256"] != baseline["sha256"]


def test_the_mkl_reproducibility_branch_reaches_the_weights() -> None:
    here = _train("portable", dict(PORTABLE_TORCH_ENVIRONMENT))
    avx2_branch = _train("portable", {**PORTABLE_TORCH_ENVIRONMENT, "MKL_CBWR": "AVX2"})
    assert avx2_branch["capability"] == "DEFAULT"
    assert avx2_branch["sha256"] != here["sha256"]


def test_the_thread_count_reaches_the_weights() -> None:
    # the two-thread run waits passively at OpenMP barriers: the bits are the same, and it no longer spins against
    # the other pytest worker (1.4 s instead of 15 s beside another two-thread training on two cores)
    two = _train("portable", {**PORTABLE_TORCH_ENVIRONMENT, "OMP_WAIT_POLICY": "PASSIVE"}, threads=2)
    assert _train("portable", dict(PORTABLE_TORCH_ENVIRONMENT))["sha256"] != two["sha256"]
