"""platform_record: the keys of the evidence record, env overrides reported, torch never imported by it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from certification import platform_info
from support import REPO

_CHILD = """
import json, sys
from certification.platform_info import platform_record, torch_capability
record = platform_record()
imported = "torch" in sys.modules
print(json.dumps({"record": record, "torch_imported_by_record": imported, "capability": torch_capability()}))
"""


def test_record_keys_and_json():
    record = platform_info.platform_record()
    assert list(record) == sorted(record)
    assert set(record) == {"cpu_model", "env", "machine", "numpy_simd", "system", "versions"}
    assert set(record["env"]) == set(platform_info.ENV_OVERRIDES)
    assert {"python", "numpy", "torch", "onnxruntime"} <= set(record["versions"])
    assert record["versions"]["numpy"] and record["cpu_model"] and record["machine"]
    simd = record["numpy_simd"]
    assert set(simd) >= {"baseline", "found", "highest"} and isinstance(simd["found"], list)
    assert json.loads(json.dumps(record)) == record


def test_cpu_model_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n\n"
                   "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n")
    assert platform_info.cpu_model(x86) == "Intel(R) Xeon(R) Gold 6338"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n")
    assert platform_info.cpu_model(arm) == "implementer 0x41 part 0xd0c"
    assert platform_info.cpu_model(tmp_path / "missing")  # falls back to platform.processor() or "unknown"


def test_cpu_vendor_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n")
    assert platform_info.cpu_vendor(x86) == "AuthenticAMD"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nCPU implementer\t: 0x41\n")
    assert platform_info.cpu_vendor(arm) is None
    assert platform_info.cpu_vendor(tmp_path / "missing") is None


def test_overrides_reported_in_subprocess():
    env = {**os.environ, "PYTHONPATH": str(REPO), "ATEN_CPU_CAPABILITY": "default"}
    env.pop("NPY_DISABLE_CPU_FEATURES", None)
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["record"]["env"]["ATEN_CPU_CAPABILITY"] == "default"
    assert out["record"]["env"]["NPY_DISABLE_CPU_FEATURES"] is None
    assert out["torch_imported_by_record"] is False
    if out["record"]["versions"]["torch"] is not None:
        assert out["capability"] == "DEFAULT"
