"""Shared plumbing for stage entry points: params.yaml sections with strict keys, one-line errors."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from certification.errors import (EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR, InputError, MissingInputError, debug_requested,
                                  internal_error_line, silence_library_warnings)
from certification.yaml_io import read_yaml

PARAMS_FILE = Path(os.environ.get("SMOOTHCERT_PARAMS", "params.yaml"))


def load_section(section: str, keys: Mapping[str, type | tuple[type, ...]], path: Path | None = None,
                 optional: Mapping[str, type | tuple[type, ...]] | None = None) -> dict[str, Any]:
    """Read ``section`` of params.yaml; every key in ``keys`` is required, keys in ``optional`` may be given (absent
    ones are left out of the result), no other key is allowed.

    Types are checked (int is accepted where float is expected). Errors name the key and the file.
    """
    document = load_document(path)
    path = Path(path or PARAMS_FILE)
    if section not in document or not isinstance(document[section], dict):
        raise InputError(f"{path}: missing section '{section}:'")
    values = document[section]
    optional = dict(optional or {})
    unknown = sorted(set(values) - set(keys) - set(optional))
    if unknown:
        raise InputError(f"{path}: unknown key '{section}.{unknown[0]}'; allowed keys: {', '.join(sorted({**keys, **optional}))}")
    for key, expected in {**keys, **optional}.items():
        if key not in values:
            if key in optional:
                continue
            raise InputError(f"{path}: missing key '{section}.{key}'")
        value = values[key]
        allowed = expected if isinstance(expected, tuple) else (expected,)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            values[key] = value
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join(t.__name__ for t in allowed)
            raise InputError(f"{path}: '{section}.{key}' must be {names}, got {value!r}")
    return {key: values[key] for key in {**keys, **optional} if key in values}


def load_document(path: Path | None = None) -> dict[str, Any]:
    """The whole params.yaml (for stages that read another stage's section, e.g. certify's sigma default)."""
    path = Path(path or PARAMS_FILE)
    if not path.is_file():
        raise MissingInputError(f"{path}: params file not found; run from the repository root")
    document = read_yaml(path) or {}
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a mapping of params sections")
    return document


def run_stage(name: str, main: Callable[[], int | None]) -> None:
    """Run a stage's main; bad input becomes one line on stderr and exit code 2, an unexpected error one line
    and exit code 70 (the traceback with SMOOTHCERT_DEBUG=1)."""
    silence_library_warnings()
    try:
        code = main() or 0
    except InputError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - a bug, not a verdict: never exit 1
        if debug_requested():
            raise
        print(f"{name}: {internal_error_line(exc)}", file=sys.stderr)
        code = EXIT_INTERNAL_ERROR
    sys.exit(code)
