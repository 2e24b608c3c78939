"""Errors the library raises for bad input.

Every user-facing problem is an :class:`InputError` whose message is one line that names the problem and,
where possible, the fix. The CLI and the pipeline stages print it as ``error: <message>`` and exit 2, whatever
the subclass: the subclasses only say which kind of problem it is, for callers that want to tell them apart.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user: a file, a parameter or an option. The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


#: Exit codes shared by the CLI and the pipeline stages: bad input, and an unexpected internal error (never 1, which
#: means REJECT or NOT VERIFIED, so a CI gate cannot read a crash as a rejection).
EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 70


def internal_error_line(exc: BaseException) -> str:
    """One line for an unexpected exception: its type and first message line, and how to see the traceback."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"internal error: {type(exc).__name__}: {first[:300]} (set SMOOTHCERT_DEBUG=1 or pass --debug for the traceback)"


#: Libraries whose warnings the commands and stages report in their own words (verify's checks, sign's refusals).
QUIET_LOGGERS = ("pypdf", "pyhanko", "pyhanko_certvalidator", "fontTools")


def silence_library_warnings() -> None:
    """Keep the log lines of :data:`QUIET_LOGGERS` (below ERROR) off the terminal beside our one-line messages."""
    import logging

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def debug_requested() -> bool:
    """True when SMOOTHCERT_DEBUG asks for tracebacks of unexpected errors."""
    import os

    return os.environ.get("SMOOTHCERT_DEBUG", "") not in ("", "0")


class MissingInputError(InputError):
    """A file the step needs does not exist (run the step that writes it first)."""


class StaleArtifactError(InputError):
    """Files that must describe the same artifact disagree (a hash, a count, a model): rerun the pipeline."""


class ParameterError(InputError):
    """A parameter or option is out of range or of the wrong type; nothing has been read or written yet."""
