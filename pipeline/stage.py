"""Shared plumbing for stage entry points: params.yaml sections with strict keys, one-line errors."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from certification.errors import InputError

PARAMS_FILE = Path(os.environ.get("SMOOTHCERT_PARAMS", "params.yaml"))


def load_section(section: str, keys: Mapping[str, type | tuple[type, ...]], path: Path | None = None) -> dict[str, Any]:
    """Read ``section`` of params.yaml; every key in ``keys`` is required, no other key is allowed.

    Types are checked (int is accepted where float is expected). Errors name the key and the file.
    """
    path = Path(path or PARAMS_FILE)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise InputError(f"{path}: params file not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if section not in document or not isinstance(document[section], dict):
        raise InputError(f"{path}: missing section '{section}:'")
    values = document[section]
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise InputError(f"{path}: unknown key '{section}.{unknown[0]}'; allowed keys: {', '.join(sorted(keys))}")
    for key, expected in keys.items():
        if key not in values:
            raise InputError(f"{path}: missing key '{section}.{key}'")
        value = values[key]
        allowed = expected if isinstance(expected, tuple) else (expected,)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            values[key] = value
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join(t.__name__ for t in allowed)
            raise InputError(f"{path}: '{section}.{key}' must be {names}, got {value!r}")
    return {key: values[key] for key in keys}


def load_document(path: Path | None = None) -> dict[str, Any]:
    """The whole params.yaml (for stages that read another stage's section, e.g. certify's sigma default)."""
    path = Path(path or PARAMS_FILE)
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def run_stage(name: str, main: Callable[[], int | None]) -> None:
    """Run a stage's main; bad input becomes one line on stderr and exit code 2."""
    try:
        code = main() or 0
    except InputError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
