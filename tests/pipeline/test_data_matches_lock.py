"""A fresh clone's data stage reproduces the data hashes committed in dvc.lock, at any numpy SIMD level.

The data stage runs in a scratch folder on the committed params.yaml, once as this CPU allows and once with
numpy's AVX2 and AVX-512 loops switched off (another machine's code paths); both must write the bytes dvc.lock
records for data/*.npz and data/datasheet.json.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import REPO

pytestmark = pytest.mark.slow
LOCKED = {out["path"]: out["md5"] for out in yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]["data"]["outs"]}


def _features_to_disable() -> str:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    found = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
    return " ".join(f for f in found if f.startswith(("X86_V3", "X86_V4", "AVX512")))


@pytest.mark.parametrize("level", ["native", "no-avx2"])
def test_data_stage_writes_the_locked_bytes(level: str, tmp_path: Path) -> None:
    disable = _features_to_disable() if level == "no-avx2" else ""
    if level == "no-avx2" and not disable:
        pytest.skip("numpy runs no AVX2 or AVX-512 loops here; nothing to switch off")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO), "SMOOTHCERT_TRACKING": "off", "NPY_DISABLE_CPU_FEATURES": disable}
    done = subprocess.run([sys.executable, "-m", "pipeline.data"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for path, md5 in LOCKED.items():
        assert hashlib.md5((tmp_path / path).read_bytes()).hexdigest() == md5, (path, level)
