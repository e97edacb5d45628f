"""Image files on a network drive that stops answering: every read waits at most --decode-timeout.

A read from a stalled NAS, SMB or NFS share blocks in the kernel for as long as the drive is
silent. Here a chosen file stalls in ``os.fstat``, which both the hash and the image read call
right after opening the file (a stalled share blocks there as it does in ``read``): its reads
block on an event until the test lets the drive answer. Without a bound they would block for
``STALL_CAP_S`` and then succeed, so a test of code that waits fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import folder_runner
from bundle_factory import lesion_rgb, write_image
from screening.stalled_reads import MAX_STUCK_READS, ImagesUnreachable, StallGuard
from screening.image_header import ImageDecodeError
from screening.images import read_image_file
from screening.journal import journal_path, lock_path

REPO = Path(__file__).resolve().parents[2]
STALL_CAP_S = 30.0  # how long a stalled read blocks at most: the drive answers in the end

pytestmark = pytest.mark.usefixtures("no_default_bundle")


class StalledDrive:
    """Makes reads of chosen files block, as on a share that stopped answering, until :meth:`answer`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: set[tuple[int, int]] = set()
        self.answered = threading.Event()
        self.blocked = 0  # reads that blocked so far
        real_fstat = os.fstat

        def fstat(fd: int, *args, **kwargs) -> os.stat_result:
            info = real_fstat(fd, *args, **kwargs)
            if (info.st_dev, info.st_ino) in self.files:
                self.blocked += 1
                self.answered.wait(STALL_CAP_S)
            return info

        monkeypatch.setattr(os, "fstat", fstat)

    def stall(self, path: Path) -> Path:
        info = os.stat(path)
        self.files.add((info.st_dev, info.st_ino))
        return path

    def answer(self) -> None:
        """The drive answers again: stuck reads return, and no read blocks any more."""
        self.files.clear()
        self.answered.set()


@pytest.fixture
def drive(monkeypatch: pytest.MonkeyPatch) -> Iterator[StalledDrive]:
    stalled = StalledDrive(monkeypatch)
    yield stalled
    stalled.answer()  # the reads a test left stuck end with it


def timeout_reason(budget: float) -> str:
    return f"the file did not finish reading within the {budget:g} s limit per image (a stalled network drive?)"


# -- the guard around each read -------------------------------------------------------------------

def test_a_read_past_the_budget_becomes_a_retryable_error_and_the_reader_is_left_behind(
        tmp_path: Path, drive: StalledDrive) -> None:
    stalled = drive.stall(write_image(tmp_path / "stalled.png", lesion_rgb(0)))
    local = write_image(tmp_path / "local.png", lesion_rgb(1))
    with StallGuard(0.3) as guard:
        started = time.monotonic()
        with pytest.raises(ImageDecodeError) as raised:
            guard.call(read_image_file, stalled)
        waited = time.monotonic() - started
        assert (raised.value.reason, raised.value.transient) == (timeout_reason(0.3), True)
        assert 0.3 <= waited < 5, waited
        # The next image does not wait for the stuck one, and gets its bytes.
        assert guard.call(read_image_file, local) == local.read_bytes()
        # A read's own error passes through unchanged.
        with pytest.raises(ImageDecodeError, match="cannot read file"):
            guard.call(read_image_file, tmp_path / "gone.png")
        drive.answer()


def test_a_few_reads_stuck_at_once_stop_the_run_and_no_more_readers_are_started(
        tmp_path: Path, drive: StalledDrive) -> None:
    files = [drive.stall(write_image(tmp_path / f"{index}.png", lesion_rgb(index)))
             for index in range(MAX_STUCK_READS + 3)]
    with StallGuard(0.1) as guard:
        for path in files[:MAX_STUCK_READS - 1]:  # a flaky drive: error rows, the run goes on
            with pytest.raises(ImageDecodeError, match="did not finish reading"):
                guard.call(read_image_file, path)
        with pytest.raises(ImagesUnreachable) as raised:
            guard.call(read_image_file, files[MAX_STUCK_READS - 1])
        assert str(raised.value) == (
            f"the images folder stopped answering: {MAX_STUCK_READS} file reads are stuck (each for over "
            f"0.1 s; a stalled network drive?); the run stopped, finished images are kept in the journal: "
            f"once the drive answers, rerun the same command with --resume")
        readers = guard._readers
        assert readers == MAX_STUCK_READS  # one per stuck read: a stuck reader takes no more reads
        for path in files[MAX_STUCK_READS:]:  # refused at once, without a thread more
            with pytest.raises(ImagesUnreachable):
                guard.call(read_image_file, path)
        assert guard._readers == readers
        assert drive.blocked == MAX_STUCK_READS
        # When the drive answers, the stuck readers return and reads go through again.
        drive.answer()
        deadline = time.monotonic() + 10
        while guard._stuck and time.monotonic() < deadline:
            time.sleep(0.01)
        assert guard.call(read_image_file, files[-1]) == files[-1].read_bytes()


def test_closing_the_guard_wakes_a_caller_waiting_on_a_stuck_read(tmp_path: Path, drive: StalledDrive) -> None:
    stalled = drive.stall(write_image(tmp_path / "stalled.png", lesion_rgb(0)))
    guard = StallGuard(600)
    raised: list[ImageDecodeError] = []

    def read() -> None:
        try:
            guard.call(read_image_file, stalled)
        except ImageDecodeError as error:
            raised.append(error)

    caller = threading.Thread(target=read)
    caller.start()
    while not drive.blocked:
        time.sleep(0.01)
    guard.close()  # what an interrupted run does on its way out
    caller.join(timeout=5)
    assert not caller.is_alive(), "the caller still waits for the stuck read"
    assert [(error.reason, error.transient) for error in raised] == [("the run was stopped", True)]


# -- screen folder ------------------------------------------------------------------------------------


def _screen(images: Path, meta: Path, out: Path, bundle: Path, *extra: object):
    return folder_runner.run_folder(images, meta, out, bundle, "--quiet", *extra, batch_size=2, workers=2)



def test_a_stalled_file_is_one_error_row_the_night_finishes_and_resume_retries_it(
        tmp_path: Path, tiny_bundle: Path, drive: StalledDrive) -> None:
    images, meta = folder_runner.small_folder(tmp_path)
    drive.stall(write_image(images / "stalled.png", lesion_rgb(5)))
    out = tmp_path / "results.csv"
    started = time.monotonic()
    result = _screen(images, meta, out, tiny_bundle, "--decode-timeout", 0.5)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < STALL_CAP_S  # it did not wait for the drive
    rows = folder_runner.rows_by_image(out)
    assert sorted(rows) == ["good_0.png", "good_1.png", "stalled.png"]
    assert rows["good_0.png"]["status"] == rows["good_1.png"]["status"] == "ok"
    assert (rows["stalled.png"]["status"], rows["stalled.png"]["error"]) == ("error", timeout_reason(0.5))
    assert drive.blocked == 1  # read once: a file that did not finish reading for its hash is not read again

    # The next night the drive is still silent: hashing the journaled images does not hang
    # either, the file is an error row again and the good images are reused.
    result = _screen(images, meta, out, tiny_bundle, "--decode-timeout", 0.5, "--resume")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert (summary["screened"], summary["reused"]) == (1, 2)
    assert folder_runner.rows_by_image(out)["stalled.png"]["error"] == timeout_reason(0.5)

    drive.answer()
    result = _screen(images, meta, out, tiny_bundle, "--decode-timeout", 0.5, "--resume")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert (summary["screened"], summary["reused"]) == (1, 2)
    assert folder_runner.rows_by_image(out)["stalled.png"]["status"] == "ok"


def test_a_drive_gone_silent_stops_the_run_with_one_line_and_resume_continues(
        tmp_path: Path, tiny_bundle: Path, drive: StalledDrive) -> None:
    images, meta = folder_runner.small_folder(tmp_path)
    for index in range(2, 12):  # sorted after the good ones: those are screened first
        drive.stall(write_image(images / f"late_{index:02d}.png", lesion_rgb(index)))
    out = tmp_path / "results.csv"
    result = _screen(images, meta, out, tiny_bundle, "--decode-timeout", 0.3)
    assert folder_runner.error_line(result, 2) == (
        f"Error: the images folder stopped answering: {MAX_STUCK_READS} file reads are stuck (each for over "
        f"0.3 s; a stalled network drive?); the run stopped, finished images are kept in the journal: once "
        f"the drive answers, rerun the same command with --resume")
    # What is left behind: the stuck reads, and the other worker's read that was in flight
    # alongside the last one (the idle readers end when the run closes its pool).
    deadline = time.monotonic() + 10
    while len(_readers()) > MAX_STUCK_READS + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_readers()) <= MAX_STUCK_READS + 1
    assert not out.exists() and not lock_path(out).exists()  # no results yet, and the next night is not locked out
    assert journal_path(out).exists()

    drive.answer()
    result = _screen(images, meta, out, tiny_bundle, "--decode-timeout", 0.3, "--resume")
    assert result.exit_code == 0, result.output
    rows = folder_runner.rows_by_image(out)
    assert len(rows) == 12 and all(row["status"] == "ok" for row in rows.values())
    assert json.loads((tmp_path / "results.summary.json").read_text())["reused"] >= 2  # the good ones


def _readers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "read"]


# -- a real `screen` process: it ends, and a signal stops it, whatever its stuck reads -----------------

STALL_THEN_RUN = """
import os, pathlib, sys, threading
from screening.cli import main

stalled, marker = os.stat(sys.argv[1]), pathlib.Path(sys.argv[2])
real_fstat = os.fstat

def fstat(fd, *args, **kwargs):
    info = real_fstat(fd, *args, **kwargs)
    if (info.st_dev, info.st_ino) == (stalled.st_dev, stalled.st_ino):
        marker.write_text("stuck")
        threading.Event().wait()  # the drive never answers
    return info

os.fstat = fstat
sys.argv = ["screen", *sys.argv[3:]]
main()
"""


def _start(tmp_path: Path, tiny_bundle: Path, *extra: object) -> tuple[subprocess.Popen, Path, Path]:
    images, meta = folder_runner.small_folder(tmp_path)
    stalled = write_image(images / "stalled.png", lesion_rgb(5))
    out, marker = tmp_path / "out" / "results.csv", tmp_path / "stuck"
    out.parent.mkdir()
    args = folder_runner.folder_args(images, meta, out, tiny_bundle, "--quiet", *extra, batch_size=1, workers=1)
    process = subprocess.Popen([sys.executable, "-c", STALL_THEN_RUN, str(stalled), str(marker), *args[1:]],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, out, marker


def test_the_process_exits_without_waiting_for_a_read_stuck_for_good(tmp_path: Path, tiny_bundle: Path) -> None:
    process, out, marker = _start(tmp_path, tiny_bundle, "--decode-timeout", 1)
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert marker.exists()  # the read did get stuck
    assert folder_runner.rows_by_image(out)["stalled.png"]["error"] == timeout_reason(1)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "results.csv", "results.csv.journal", "results.history", "results.summary.json"]


def test_ctrl_c_stops_the_run_promptly_while_a_read_is_stuck(tmp_path: Path, tiny_bundle: Path) -> None:
    process, out, marker = _start(tmp_path, tiny_bundle, "--decode-timeout", 600)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None and marker.exists(), process.communicate()
        stdout, stderr, stopped_in = folder_runner.stop_with(process, signal.SIGINT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert stopped_in < 30, f"took {stopped_in:.1f} s to stop"
    assert stderr.splitlines()[-1] == ("Interrupted (SIGINT): finished images are kept in the journal; rerun "
                                       "the same command with --resume to continue")
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.csv.journal"]  # no temp file, no lock


# -- the Ray path's decode tasks ------------------------------------------------------------------

def test_a_ray_decode_task_hashes_a_stalled_file_within_the_budget_too(tmp_path: Path, drive: StalledDrive) -> None:
    """`screen folder --ray` decodes in Ray tasks (screening/distributed/stages.py): a stalled file
    is a retryable error row there as well, not a task that waits for the drive."""
    pytest.importorskip("ray", reason="Ray Data is the extra [distributed]")
    import pickle

    from screening.decode_pool import DecodeLimits
    from screening.distributed.stages import decode_row
    from screening.metadata import MetaCodes
    from screening.pipeline import Failed, ImageJob

    write_image(tmp_path / "a.png", lesion_rgb(64))
    drive.stall(write_image(tmp_path / "b.png", lesion_rgb(64)))
    jobs = [ImageJob(name, MetaCodes(0, 0, 0)) for name in ("a.png", "b.png")]
    started = time.monotonic()
    row = decode_row({"jobs": pickle.dumps(jobs)}, str(tmp_path), (64, 64), DecodeLimits(1.0, 2**30))
    took = time.monotonic() - started
    ok, stalled = pickle.loads(row["decoded"])
    assert not isinstance(ok, Failed)
    assert isinstance(stalled, Failed) and stalled.reason == timeout_reason(1.0) and stalled.retry
    assert took < STALL_CAP_S / 2
