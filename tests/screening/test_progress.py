"""Tests for screening.progress: terminal bar, plain log lines, quiet mode, the reporter."""

from __future__ import annotations

import io

import pytest

from screening.progress import Progress, Reporter, format_duration


class Clock:
    """A clock the test moves by hand, so nothing here depends on real time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (42.4, "42s"), (185, "3m05s"), (7620, "2h07m")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_log_lines_when_not_a_terminal() -> None:
    stream, clock = io.StringIO(), Clock()
    with Progress(100, stream=stream, tty=False, log_interval_s=30, clock=clock) as progress:
        clock.now += 10
        progress.update(10)  # too soon for a line
        clock.now += 20
        progress.update(20)
        clock.now += 5
        progress.update(5)
    assert stream.getvalue().splitlines() == [
        "screening: 30/100 images (30%), 1.0 images/s, ETA 1m10s",
        "screening: 35/100 images (35%), 1.0 images/s, ETA 1m05s",
    ]


def test_bar_is_redrawn_in_place_on_a_terminal() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(8, stream=stream, tty=True, clock=clock)
    clock.now += 1
    progress.update(2)
    clock.now += 1
    progress.update(6)
    progress.close()
    progress.close()  # closing twice prints once
    assert stream.getvalue() == (
        "\rscreening [######..................] 2/8 images (25%), 2.0 images/s, ETA 3s\x1b[K"
        "\rscreening [########################] 8/8 images (100%), 4.0 images/s, ETA 0s\x1b[K"
        "\rscreening [########################] 8/8 images (100%), 4.0 images/s, ETA 0s\x1b[K\n")


def test_quiet_writes_nothing() -> None:
    stream, clock = io.StringIO(), Clock()
    with Progress(5, stream=stream, tty=True, quiet=True, clock=clock) as progress:
        clock.now += 60
        progress.update(5)
    assert stream.getvalue() == ""


def test_nothing_to_do_is_complete_not_a_division_by_zero() -> None:
    stream = io.StringIO()
    Progress(0, stream=stream, tty=False, clock=Clock()).close()
    assert stream.getvalue() == "screening: 0/0 images (100%), 0.0 images/s, ETA ?\n"


def test_reporter_keeps_warnings_when_quiet() -> None:
    out, err = io.StringIO(), io.StringIO()
    loud, quiet = Reporter(out=out, err=err), Reporter(quiet=True, out=out, err=err)
    loud.info("backend: onnxruntime")
    quiet.info("not shown")
    quiet.warn("took over a stale lock")
    assert out.getvalue() == "backend: onnxruntime\n"
    assert err.getvalue() == "Warning: took over a stale lock\n"
    assert quiet.progress(3).quiet and not loud.progress(3).quiet
