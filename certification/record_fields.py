"""Checked fields of the JSON-lines result files: each returns the value in its Python type or raises a one-line
:class:`~certification.errors.InputError` naming the file, line and key (``where``); :func:`read_text` reads such a
file as UTF-8 (:class:`~certification.errors.MissingInputError` when it is absent)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from certification.errors import InputError, MissingInputError


def integer_field(value: Any, key: str, where: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{where}: '{key}' must be an integer, got {value!r}")
    if low is not None and value < low:
        raise InputError(f"{where}: '{key}' must be >= {low}, got {value}")
    return int(value)


def real_field(value: Any, key: str, where: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: '{key}' must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InputError(f"{where}: '{key}' = {value} is outside [{low}, {high}]")
    return float(value)


def flag_field(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: '{key}' must be true or false, got {value!r}")
    return value


def counts_field(value: Any, key: str, where: str) -> list[int]:
    if not isinstance(value, list):
        raise InputError(f"{where}: '{key}' must be a list of counts, got {value!r}")
    return [integer_field(v, key, where, low=0) for v in value]


def digest_field(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: '{key}' must name the file by its SHA-256, got {value!r}")
    return value


def read_text(path: str | os.PathLike[str], what: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found; run the stage that writes it first")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file of JSON lines") from None
