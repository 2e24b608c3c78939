"""Progress bars for long work: shown on a terminal, silent otherwise (CI logs, pipes, tests)."""
from __future__ import annotations

import sys
from typing import Any, Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> "tqdm[T]":
    """A tqdm bar on stderr that is disabled unless stderr is a terminal."""
    kwargs.setdefault("disable", not sys.stderr.isatty())
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
