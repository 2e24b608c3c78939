"""Errors the library raises for bad input.

Every user-facing problem is an :class:`InputError` whose message is one line that names the
problem and, where possible, the fix. The CLI prints it as ``error: <message>`` and exits 2.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user: a file, a parameter or an option. The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
