"""``smoothcert``: the command-line face of the library.

Each public module in :mod:`certification.commands` defines ``register(subparsers)`` and adds one subcommand whose
handler returns the exit code. Bad input raises :class:`~certification.errors.InputError`; it is printed as
one line and the command exits 2.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from certification import commands
from certification.errors import (EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR, InputError, debug_requested, internal_error_line,
                                  silence_library_warnings)


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), or "unknown" when run from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smoothcert")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smoothcert",
        description="Certified L2 robustness of ONNX classifiers by randomized smoothing, with a gate and a signed dossier. "
        f"Exit codes: 0 success, 1 REJECT / not verified / audit difference, {EXIT_BAD_INPUT} bad input, "
        f"{EXIT_INTERNAL_ERROR} internal error.",
    )
    parser.add_argument("--version", action="version", version=f"smoothcert {package_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected internal error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # shared helpers (e.g. _options), not subcommands
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    silence_library_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"smoothcert {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"smoothcert {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every other failure is a bug: one line, its own exit code
        if args.debug or debug_requested():
            raise
        print(f"smoothcert {args.command}: {internal_error_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
