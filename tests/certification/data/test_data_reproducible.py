"""The synthetic generator's bytes do not depend on the CPU's SIMD level; exact_math matches NumPy.

NumPy picks its exp/sin/cos/power loops by CPU feature and ``NPY_DISABLE_CPU_FEATURES`` switches them off,
so running the generator in subprocesses under several settings emulates older CPUs on this one. With the
lesions-1.0 generator (float32, NumPy transcendentals) the 500-image split below had three different
SHA-256 values under the three x86-64 settings; lesions-1.1 must give one.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
from functools import reduce

import numpy as np
import pytest

from certification.data import exact_math as xm
from certification.data import synthetic
from support import REPO
from support.digests import split_digest

SEED = 20261123

#: SHA-256 of split_digest(generate_split(n, size, SEED, "test")) with lesions-1.1 and NumPy 2.4.
PINNED = {
    (64, 32): "5d4909bc2b302743e37f3dfd3a49f6acd0fc37a29b70cfd6242cb80e5ed57217",
    (16, 64): "39b148fe4371e0f8ec7f9e251dc7f2f13c2a28b557024749ce8afb6be29ef4ce",
}


_CHILD = """
import json, sys
from numpy.lib import introspect
from certification.data import synthetic
sys.path.insert(0, {tests!r})
from support.digests import split_digest
loops = introspect.opt_func_info(func_name="^(exp|sin)$")
out = {{"loops": {{name: sigs[sig]["current"] for name, sigs in loops.items() for sig in sigs if sig in ("ff", "dd")}}}}
for n, size in {cases!r}:
    out[f"{{n}}x{{size}}"] = split_digest(synthetic.generate_split(n, size, {seed}, "test"))
print(json.dumps(out))
"""
CASES = [(500, 32), (40, 64), (40, 28)]


def _found_features() -> list[str]:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def _settings() -> dict[str, str]:
    """NPY_DISABLE_CPU_FEATURES values: none, no AVX-512, no AVX2/AVX-512 (from the features numpy found)."""
    found = _found_features()
    avx512 = [f for f in found if re.search(r"AVX512|X86_V4", f)]
    avx2 = avx512 + [f for f in found if re.search(r"AVX2|FMA3|X86_V3|F16C|^AVX$", f) and f not in avx512]
    settings = {"none": ""}
    if avx512:
        settings["no-avx512"] = " ".join(avx512)
    if avx2 != avx512:
        settings["no-avx2-avx512"] = " ".join(avx2)
    return settings


def _run_child(disabled: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "NPY_DISABLE_CPU_FEATURES": disabled}
    code = _CHILD.format(tests=str(REPO / "tests"), cases=CASES, seed=SEED)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the SIMD settings are x86-64 names")
def test_same_bytes_at_every_numpy_simd_level():
    results = {}
    for label, disabled in _settings().items():
        done = _run_child(disabled)
        if done.returncode != 0 and "cannot disable CPU feature" in done.stderr:
            continue  # part of this numpy build's baseline: nothing to emulate
        assert done.returncode == 0, f"{label}: {done.stderr[-2000:]}"
        results[label] = json.loads(done.stdout.strip().splitlines()[-1])
    loops = {json.dumps(r.pop("loops"), sort_keys=True) for r in results.values()}
    if len(loops) < 2:
        pytest.skip(f"this CPU offers numpy one SIMD level only ({sorted(results)})")
    digests = {label: r for label, r in results.items()}
    first = next(iter(digests.values()))
    for label, r in digests.items():
        assert r == first, f"bytes differ under NPY_DISABLE_CPU_FEATURES setting {label!r}: {digests}"


def test_pinned_split_digests():
    for (n, size), expected in PINNED.items():
        assert split_digest(synthetic.generate_split(n, size, SEED, "test")) == expected, (n, size)


def test_generator_version_marks_the_byte_change():
    assert synthetic.GENERATOR_VERSION == "lesions-1.1"


def test_generator_uses_no_numpy_transcendental_or_reduction(monkeypatch):
    """Rendering must not call NumPy's SIMD-dispatched transcendentals or order-dependent reductions."""
    def forbidden(*_args, **_kwargs):
        raise AssertionError("SIMD-dependent numpy function called by the generator")

    for name in ("exp", "expm1", "exp2", "log", "log1p", "sin", "cos", "tan", "arctan2", "arctan", "hypot", "power",
                 "float_power", "tanh", "sum", "mean", "matmul", "dot", "einsum"):
        monkeypatch.setattr(np, name, forbidden)
    split = synthetic.generate_split(8, 32, SEED, "val")
    assert split.images.shape == (8, 32, 32, 3)


# ---------------------------------------------------------------- exact_math vs numpy float64

def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


def test_exp_matches_numpy():
    ln2 = math.log(2)
    edges = (np.arange(-1021, 1023) + 0.5) * ln2  # range-reduction boundaries x = (k + 1/2) ln 2
    edges = edges[(edges >= xm.EXP_UNDERFLOW) & (edges <= xm.EXP_OVERFLOW)]
    grids = [np.linspace(xm.EXP_UNDERFLOW, xm.EXP_OVERFLOW, 1_000_001), np.linspace(-40, 40, 400_001),
             np.linspace(-1e-3, 1e-3, 10_001), edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf),
             np.array([0.0, -0.0, 1.0, -1.0, xm.EXP_UNDERFLOW, xm.EXP_OVERFLOW])]
    for x in grids:
        assert _rel(xm.exp(x), np.exp(x)) < 1e-15
    assert xm.exp(0.0) == 1.0
    assert np.all(xm.exp(np.array([-708.5, -1e4, -np.inf])) == 0.0)
    for bad in (np.nan, 710.0, np.inf):
        with pytest.raises(ValueError):
            xm.exp(np.array([0.0, bad]))


def test_sin_cos_match_numpy():
    k = np.arange(-60_000, 60_001, dtype=np.float64)
    boundaries = np.concatenate([(k + 0.5) * (np.pi / 2), k * (np.pi / 2)])  # quadrant switches and zeros
    boundaries = boundaries[np.abs(boundaries) <= xm.MAX_TRIG_ARGUMENT]
    grids = [np.linspace(-10, 10, 400_001), np.linspace(-xm.MAX_TRIG_ARGUMENT, xm.MAX_TRIG_ARGUMENT, 1_000_001),
             boundaries, np.nextafter(boundaries, np.inf), np.nextafter(boundaries, -np.inf),
             np.array([0.0, -0.0, 1e-300, np.pi, -np.pi, 2 * np.pi, xm.MAX_TRIG_ARGUMENT])]
    for x in grids:
        s, c = xm.sincos(x)
        assert np.max(np.abs(s - np.sin(x))) < 1e-15
        assert np.max(np.abs(c - np.cos(x))) < 1e-15
        assert np.array_equal(xm.sin(x), s) and np.array_equal(xm.cos(x), c)
    assert xm.sin(0.0) == 0.0 and xm.cos(0.0) == 1.0
    for bad in (np.nan, 1.0001 * xm.MAX_TRIG_ARGUMENT, -np.inf):
        with pytest.raises(ValueError):
            xm.sin(np.array([0.0, bad]))


def test_hypot_and_fixed_sum():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=10_000) * 10, rng.normal(size=10_000) * 10
    assert _rel(xm.hypot(x, y), np.hypot(x, y)) < 4e-16
    a = rng.normal(size=(7, 9, 5))
    total = xm.fixed_sum(a, axis=1)
    expected = reduce(lambda acc, i: acc + a[:, i], range(1, 9), a[:, 0].copy())  # index order, by hand
    assert np.array_equal(total, expected)
    assert xm.fixed_sum(a, axis=-1, keepdims=True).shape == (7, 9, 1)
    assert np.allclose(total, a.sum(axis=1), rtol=0, atol=1e-13)
