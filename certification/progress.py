"""Progress of long work on stderr: a tqdm bar on a terminal, plain lines in CI logs and pipes.

On a terminal: a tqdm bar. Otherwise (CI logs, pipes, files): :class:`LineProgress`, one line such as
``certify: 40/200 ex (20%), 3.1 ex/s, 13 s elapsed, ETA 52 s, samples_s=31,000`` at most every
``SMOOTHCERT_PROGRESS_SECONDS`` seconds (default 10) and whenever a further 10% is done, plus a last line on close if
any line was printed. ``disable=True`` or ``SMOOTHCERT_PROGRESS=off`` silences both.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, TextIO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
DEFAULT_INTERVAL_S = 10.0
PERCENT_STEP = 10


def _interval() -> float:
    value = os.environ.get("SMOOTHCERT_PROGRESS_SECONDS", "")
    try:
        seconds = float(value) if value else DEFAULT_INTERVAL_S
    except ValueError:
        seconds = DEFAULT_INTERVAL_S
    return seconds if seconds > 0 else DEFAULT_INTERVAL_S


class LineProgress:
    """The part of tqdm's interface the library uses (iterate, update, set_postfix, close, with), printing lines.

    A line is printed when ``interval`` seconds have passed since the last one, or when the done fraction crosses
    the next multiple of :data:`PERCENT_STEP` percent (only if at least one second passed since the last line,
    so a fast loop does not flood the log); ``clock`` returns seconds (injectable for tests)."""

    def __init__(self, iterable: Iterable[T] | None = None, *, total: int | None = None, initial: int = 0,
                 desc: str = "", unit: str = "it", file: TextIO | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, **_: Any) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.n, self.initial = total, initial, initial
        self.desc, self.unit, self.file = desc, unit, file or sys.stderr
        self.interval = _interval() if interval is None else interval
        self.clock = clock
        self.started = self.last = clock()
        self.printed = 0
        self.postfix = ""
        self.next_percent = PERCENT_STEP * (1 + self._percent() // PERCENT_STEP) if total else None
        self.closed = False

    def _percent(self) -> int:
        return int(100 * self.n / self.total) if self.total else 0

    def line(self) -> str:
        elapsed = self.clock() - self.started
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self.desc}: {self.n:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({self._percent()}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:.3g} {self.unit}/s, {elapsed:.0f} s elapsed"
        if self.total and rate > 0 and self.n < self.total:
            text += f", ETA {(self.total - self.n) / rate:.0f} s"
        return text + (f", {self.postfix}" if self.postfix else "")

    def _emit(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self.printed += 1
        self.last = self.clock()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        crossed = self.next_percent is not None and self._percent() >= self.next_percent
        if crossed:
            self.next_percent = PERCENT_STEP * (1 + self._percent() // PERCENT_STEP)
        if now - self.last >= self.interval or (crossed and now - self.last >= 1.0):
            self._emit()

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        values = {**(dict(ordered_dict) if ordered_dict else {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed and self.printed:
            self._emit()
        self.closed = True

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> "tqdm[T] | LineProgress":
    """A tqdm bar on stderr when it is a terminal; otherwise a :class:`LineProgress` (lines for CI logs)."""
    stream = kwargs.get("file") or sys.stderr
    silenced = kwargs.get("disable") is True or os.environ.get("SMOOTHCERT_PROGRESS", "").strip().lower() in {"off", "0"}
    if not silenced and not (hasattr(stream, "isatty") and stream.isatty()):
        kwargs.pop("disable", None)
        return LineProgress(iterable, **{**kwargs, "file": stream})
    kwargs.setdefault("disable", silenced)
    kwargs.setdefault("file", stream)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
