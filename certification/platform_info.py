"""The computing platform a run happened on, for the evidence record (stdlib + numpy only).

:func:`platform_record` returns a JSON-serialisable dict with sorted keys:

* ``cpu_model``: the ``model name`` (x86-64) or ``Hardware``/``CPU part`` (aarch64) line of /proc/cpuinfo,
  else :func:`platform.processor`, else ``"unknown"``;
* ``machine``: :func:`platform.machine` (``x86_64``, ``aarch64``, ...), ``system``: :func:`platform.system`;
* ``numpy_simd``: numpy's ``baseline`` features, the dispatchable features it ``found`` on this CPU (in
  numpy's order, after ``NPY_DISABLE_CPU_FEATURES``) and ``highest`` (the last found one, or the last
  baseline feature when none was found);
* ``versions``: python, numpy, torch, onnxruntime (installed distribution versions read with
  :mod:`importlib.metadata`; ``None`` when not installed; torch and onnxruntime are never imported);
* ``env``: the SIMD / ISA overrides in force (``NPY_DISABLE_CPU_FEATURES``, ``ATEN_CPU_CAPABILITY``,
  ``ONEDNN_MAX_CPU_ISA``, ``DNNL_MAX_CPU_ISA``, ``MKL_CBWR``, ``MKL_ENABLE_INSTRUCTIONS``), ``None`` when unset.

:func:`torch_capability` imports torch (only when called) and returns the ATen CPU capability it uses;
:func:`cpu_vendor` returns the x86 ``vendor_id`` (the training record carries it: MKL's code path depends on it).
"""
from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Environment variables that change which SIMD / ISA code paths numpy, torch, oneDNN or MKL take.
ENV_OVERRIDES = ("NPY_DISABLE_CPU_FEATURES", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                 "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")
_DISTRIBUTIONS = ("numpy", "torch", "onnxruntime")
#: Set before torch is imported for portable training (``train.portable_kernels``): ATen's portable, non-vectorised
#: kernels and MKL's conditional numerical reproducibility mode, so float results do not depend on the AVX2/AVX-512
#: code paths torch and MKL would choose for this CPU (oneDNN is switched off by the training code itself).
#: Measured: this pins the weights across the ISA levels one CPU offers, not across CPU vendors (an AMD EPYC and an
#: Intel Xeon gave different weights: MKL takes another path on AMD CPUs whatever MKL_CBWR says). See README.
PORTABLE_TORCH_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def cpu_model(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """The CPU's model name from /proc/cpuinfo, else :func:`platform.processor`, else ``"unknown"``."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "hardware", "cpu model", "processor"):
        value = fields.get(key, "")
        if value and not value.isdigit():  # "processor : 0" on x86 is an index, not a name
            return value
    if "cpu implementer" in fields or "cpu part" in fields:
        return f"implementer {fields.get('cpu implementer', '?')} part {fields.get('cpu part', '?')}"
    return platform.processor() or "unknown"


def cpu_vendor(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str | None:
    """The x86 ``vendor_id`` of /proc/cpuinfo (``GenuineIntel``, ``AuthenticAMD``, ...); ``None`` where there is none.

    MKL picks its code path by vendor as well as by ISA, and MKL_CBWR does not pin it across vendors (measured:
    see README, Reproducibility), so the training record names the vendor next to the model name.
    """
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "vendor_id" and value.strip():
            return value.strip()
    return None


def numpy_simd() -> dict[str, Any]:
    """numpy's baseline features, the dispatchable features found on this CPU, and the highest of them."""
    import numpy as np

    try:
        from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
        except ImportError:
            return {"baseline": [], "found": [], "highest": "unknown", "numpy": np.__version__}
    baseline = list(__cpu_baseline__)
    found = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
    highest = found[-1] if found else (baseline[-1] if baseline else "none")
    return {"baseline": baseline, "found": found, "highest": highest}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def platform_record() -> dict[str, Any]:
    """The platform record described in the module docstring (JSON-serialisable, keys sorted)."""
    versions = {"python": platform.python_version(), **{name: _version(name) for name in _DISTRIBUTIONS}}
    record = {
        "cpu_model": cpu_model(),
        "env": {name: os.environ.get(name) for name in ENV_OVERRIDES},
        "machine": platform.machine(),
        "numpy_simd": numpy_simd(),
        "system": platform.system(),
        "versions": versions,
    }
    return json.loads(json.dumps(record, sort_keys=True))  # sorted at every level, plain JSON types


def torch_capability() -> str | None:
    """torch's ATen CPU capability (``DEFAULT``, ``AVX2``, ``AVX512``, ...); ``None`` without torch."""
    if _version("torch") is None:
        return None
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


if __name__ == "__main__":  # python -m certification.platform_info
    json.dump({**platform_record(), "torch_capability": torch_capability()}, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
