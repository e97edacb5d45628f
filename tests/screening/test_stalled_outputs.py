"""The output folder on a network drive that stops answering: the lock, the journal and the results
CSV never hold the night for ever.

A write (or fsync, or open) on a silent share blocks in the kernel, where nothing in Python can
interrupt it, so the run's watchdog (screening.output_watch) prints one line and ends the process.
These tests run a real `screen` process whose chosen call on the output folder blocks for good
(``threading.Event().wait()``, as a silent share would), and check that it ends, with exit 2 and
the line, that what was journaled before is still there, and that --resume finishes the night
once the drive answers (the same command without the stall).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import folder_runner
from bundle_factory import lesion_rgb, write_image
from screening.journal import journal_path, lock_path
from screening.output_watch import LAST_WORDS_S, MIN_WRITE_STALL_S

REPO = Path(__file__).resolve().parents[2]
WRITE_STALL_S = MIN_WRITE_STALL_S  # --decode-timeout is lower in these tests: writes wait the floor
STARTUP_S = 60.0  # a loaded test machine imports ONNX Runtime and OpenCV slowly

pytestmark = pytest.mark.usefixtures("no_default_bundle")

# `screen ARGS...` where one call on the output folder blocks for good: ``call`` (os.fsync on a
# file descriptor, or os.open on a path) on a file of the folder whose name contains ``name``,
# after ``spared`` such calls went through. The first to block writes the marker file. With
# $STALL_IN_KERNEL the blocked thread takes no signal, as a thread stuck in the kernel runs no
# Python handler (a Python-level wait would run them, and Ctrl-C would look prompt for free).
STALL_THEN_RUN = """
import os, pathlib, signal, sys, threading
from screening.cli import main

folder, call, name, spared, marker = sys.argv[1:6]
folder, spared, marker = os.path.realpath(folder), int(spared), pathlib.Path(marker)
seen = [0]

def silent(path):
    path = os.path.realpath(path) if isinstance(path, (str, os.PathLike)) else ""
    if os.path.dirname(path) != folder or name not in os.path.basename(path):
        return
    seen[0] += 1
    if seen[0] > spared:
        if os.environ.get("STALL_IN_KERNEL"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        marker.write_text(os.path.basename(path))
        threading.Event().wait()  # the share never answers

real_fsync, real_open = os.fsync, os.open

def fsync(fd):
    if call == "fsync":
        silent(os.readlink(f"/proc/self/fd/{fd}"))  # an unnamed temp file reads "#123 (deleted)"
    return real_fsync(fd)

def open_(path, *args, **kwargs):
    if call == "open" and kwargs.get("dir_fd") is None:
        silent(path)
    return real_open(path, *args, **kwargs)

os.fsync, os.open = fsync, open_
sys.argv = ["screen", *sys.argv[6:]]
main()
"""


def _night(tmp_path: Path, tiny_bundle: Path, goods: int = 3) -> tuple[Path, Path, Path]:
    images, meta = folder_runner.small_folder(tmp_path, goods=goods)
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    return images, meta, out


def _args(images: Path, meta: Path, out: Path, bundle: Path, *extra: object) -> list[str]:
    return folder_runner.folder_args(images, meta, out, bundle, "--quiet", "--decode-timeout", 1, *extra,
                                     batch_size=1, workers=1)


def _run_stalled(tmp_path: Path, args: list[str], call: str, name: str, spared: int = 0):
    """Run `screen ARGS` with the stall in the folder of its --out; (exit code, stderr, seconds it ran
    after the call blocked)."""
    out = Path(args[args.index("--out") + 1])
    marker = tmp_path / "stuck"
    process = subprocess.Popen([sys.executable, "-c", STALL_THEN_RUN, str(out.parent), call, name, str(spared),
                                str(marker), *args[1:]],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        blocked = time.monotonic()
        assert marker.exists(), process.communicate(timeout=60)
        _, stderr = process.communicate(timeout=WRITE_STALL_S * 3)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr, time.monotonic() - blocked


def stalled_line(out: Path, doing: str) -> str:
    return (f"Error: the output folder {out.parent} stopped answering for {WRITE_STALL_S:g} s while {doing} "
            f"(a stalled network drive?); everything screened so far is in the journal: rerun the same command "
            f"with --resume once the drive answers")


def _journaled(out: Path) -> list[str]:
    lines = journal_path(out).read_text().splitlines()
    return [json.loads(line)["image"] for line in lines[1:]]


def test_a_journal_that_stops_answering_ends_the_night_with_one_line_and_keeps_its_lines(tmp_path, tiny_bundle):
    images, meta, out = _night(tmp_path, tiny_bundle)
    args = _args(images, meta, out, tiny_bundle)
    # The header and the first image's line are fsync'd; the second image's fsync never returns.
    code, stderr, took = _run_stalled(tmp_path, args, "fsync", ".journal", spared=2)
    assert (code, stderr.splitlines()) == (2, [stalled_line(out, "appending to the journal results.csv.journal")])
    assert took < WRITE_STALL_S * 1.25 + LAST_WORDS_S + 5, f"took {took:.1f} s to end"
    assert _journaled(out)[:1] == ["good_0.png"]  # what was journaled before the stall is kept
    assert not out.exists()

    # The drive answers: --resume reuses what the journal holds and finishes the night.
    result = folder_runner.run_folder(images, meta, out, tiny_bundle, "--quiet", "--resume", batch_size=1)
    assert result.exit_code == 0, result.output
    rows = folder_runner.rows_by_image(out)
    assert sorted(rows) == ["good_0.png", "good_1.png", "good_2.png"]
    assert all(row["status"] == "ok" for row in rows.values())
    assert json.loads((out.parent / "results.summary.json").read_text())["reused"] >= 1


def test_a_results_csv_that_stops_answering_leaves_the_last_results_and_the_whole_journal(tmp_path, tiny_bundle):
    images, meta, out = _night(tmp_path, tiny_bundle)
    args = _args(images, meta, out, tiny_bundle)
    # The results CSV is written through an unnamed temp file in its folder ("#123 (deleted)").
    code, stderr, took = _run_stalled(tmp_path, args, "fsync", "#")
    assert (code, stderr.splitlines()) == (2, [stalled_line(out, "writing the results CSV results.csv")])
    assert took < WRITE_STALL_S * 1.25 + LAST_WORDS_S + 5, f"took {took:.1f} s to end"
    assert not out.exists()  # never half a CSV
    assert sorted(_journaled(out)) == ["good_0.png", "good_1.png", "good_2.png"]

    result = folder_runner.run_folder(images, meta, out, tiny_bundle, "--quiet", "--resume", batch_size=1)
    assert result.exit_code == 0, result.output
    summary = json.loads((out.parent / "results.summary.json").read_text())
    assert (summary["screened"], summary["reused"]) == (0, 3)  # nothing screened twice
    assert len(folder_runner.rows_by_image(out)) == 3


def test_an_output_lock_that_does_not_answer_ends_the_night_before_anything_is_written(tmp_path, tiny_bundle):
    images, meta, out = _night(tmp_path, tiny_bundle)
    log = tmp_path / "night.log"
    args = _args(images, meta, out, tiny_bundle, "--log-file", log)
    code, stderr, _ = _run_stalled(tmp_path, args, "open", ".lock")
    assert (code, stderr.splitlines()) == (2, [stalled_line(out, "taking the output lock results.csv.lock")])
    assert list(out.parent.iterdir()) == []
    # The morning's reader of the log sees why the night ended.
    assert log.read_text().splitlines()[-1].endswith(stalled_line(out, "taking the output lock results.csv.lock"))
    assert not lock_path(out).exists()


def test_a_report_folder_that_stops_answering_ends_screen_report_with_one_line(tmp_path, tiny_bundle):
    images, meta, out = _night(tmp_path, tiny_bundle)
    assert folder_runner.run_folder(images, meta, out, tiny_bundle, "--quiet").exit_code == 0
    report = tmp_path / "review" / "report.html"
    report.parent.mkdir()
    args = ["report", str(out), "--images", str(images), "--out", str(report), "--bundle", str(tiny_bundle),
            "--decode-timeout", "1"]
    code, stderr, took = _run_stalled(tmp_path, ["screen", *args], "fsync", "#")  # the page's unnamed temp file
    assert (code, stderr.splitlines()) == (2, [
        f"Error: the output folder {report.parent} stopped answering for {WRITE_STALL_S:g} s while writing the "
        f"report report.html (a stalled network drive?); the report was not written: run the same command again "
        f"once the drive answers"])
    assert took < WRITE_STALL_S * 1.25 + LAST_WORDS_S + 5, f"took {took:.1f} s to end"
    assert not report.exists()


def test_ctrl_c_ends_the_night_promptly_while_a_write_is_stuck_in_the_kernel(tmp_path, tiny_bundle):
    """The main thread, stuck in an fsync, cannot run Python's handler: the watchdog hears the
    signal and ends the process with the interrupt's line and exit code, without waiting the limit."""
    images, meta, out = _night(tmp_path, tiny_bundle)
    args = _args(images, meta, out, tiny_bundle)
    marker = tmp_path / "stuck"
    process = subprocess.Popen([sys.executable, "-c", STALL_THEN_RUN, str(out.parent), "fsync", ".journal", "2",
                                str(marker), *args[1:]],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "STALL_IN_KERNEL": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None and marker.exists(), process.communicate(timeout=60)
        _, stderr, stopped_in = folder_runner.stop_with(process, signal.SIGINT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert stopped_in < WRITE_STALL_S / 2, f"took {stopped_in:.1f} s to stop"
    assert stderr.splitlines() == [
        f"Interrupted (SIGINT) while the output folder {out.parent} was not answering (appending to the journal "
        f"results.csv.journal; a stalled network drive?); everything screened so far is in the journal: rerun the "
        f"same command with --resume once the drive answers"]
    assert _journaled(out)[:1] == ["good_0.png"]


@pytest.mark.parametrize("option, doing", [("--save-masks", "writing the mask files of good_0.png"),
                                           ("--report", "opening the report's pictures")])
def test_a_masks_or_pictures_folder_that_stops_answering_ends_the_night_with_one_line(
        tmp_path, tiny_bundle, option, doing):
    """The night's other outputs, written image by image while screening: the folder named is theirs."""
    from screening.report.render import asset_folder

    images, meta, out = _night(tmp_path, tiny_bundle)
    if option == "--save-masks":
        target = stalled = tmp_path / "masks"
        calls_in, name = tmp_path, "masks"  # a mask is written through an unnamed file opened on its folder
    else:
        target = out.parent / "report.html"
        stalled = calls_in = asset_folder(target)
        name = "views.jsonl"
    args = _args(images, meta, out, tiny_bundle, option, target)
    marker = tmp_path / "stuck"
    process = subprocess.Popen([sys.executable, "-c", STALL_THEN_RUN, str(calls_in), "open", name, "0", str(marker),
                                *args[1:]], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=STARTUP_S + WRITE_STALL_S * 3)
    finally:
        if process.poll() is None:
            process.kill()
    assert marker.exists()
    assert (process.returncode, stderr.splitlines()) == (2, [
        f"Error: the output folder {stalled} stopped answering for {WRITE_STALL_S:g} s while {doing} (a stalled "
        f"network drive?); everything screened so far is in the journal: rerun the same command with --resume "
        f"once the drive answers"])
    assert not out.exists() and journal_path(out).exists()
