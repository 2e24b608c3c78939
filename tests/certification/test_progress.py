"""Progress in CI logs: plain lines on a non-terminal stream, every interval or 10%, silent when disabled."""
from __future__ import annotations

import io

from certification.progress import LineProgress, progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_non_tty_stream_gets_a_line_every_interval_and_a_last_line() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = progress(total=1000, desc="certify", unit="ex", file=stream, interval=5.0, clock=clock)
    assert isinstance(bar, LineProgress)
    for _ in range(40):  # 40 examples, 0.5 s each: 20 s, 4% done -> no percent step, a line every 5 s
        clock.now += 0.5
        bar.update(1)
    bar.set_postfix(samples_s="31,000")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5, lines  # at 5, 10, 15, 20 s, and the last line
    assert lines[0].startswith("certify: 10/1,000 ex (1%), 2 ex/s, 5 s elapsed, ETA 495 s")
    assert lines[-1].endswith("samples_s=31,000") and "40/1,000" in lines[-1]


def test_each_ten_percent_prints_once_a_second_has_passed() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = LineProgress(total=20, desc="decide", unit="ex", file=stream, interval=1000.0, clock=clock)
    for _ in range(20):
        clock.now += 1.0
        bar.update(1)
    percents = [line.split("(")[1].split("%")[0] for line in stream.getvalue().splitlines()]
    assert percents == ["10", "20", "30", "40", "50", "60", "70", "80", "90", "100"]
    bar.close()
    assert len(stream.getvalue().splitlines()) == 11


def test_iterating_counts_and_closes() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = progress(range(3), desc="train", unit="batch", file=stream, interval=1.0, clock=clock)
    seen = []
    for item in bar:
        clock.now += 10.0
        seen.append(item)
    assert seen == [0, 1, 2]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("train: 3/3 batch (100%)")


def test_fast_work_and_disabled_bars_print_nothing(monkeypatch) -> None:
    stream = io.StringIO()
    with progress(total=5, desc="quick", file=stream) as bar:
        bar.update(5)
    assert stream.getvalue() == ""
    quiet = progress(total=5, desc="off", file=stream, disable=True)
    quiet.update(5)
    quiet.close()
    monkeypatch.setenv("SMOOTHCERT_PROGRESS", "off")
    progress(total=5, desc="env-off", file=stream).close()
    assert stream.getvalue() == ""
