"""A real `python -m screening` process killed with SIGKILL mid-run, resumed, and compared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from screening.cli import cli
from csv_compare import rows_without
from screening.journal import journal_path, lock_path

REPO = Path(__file__).resolve().parents[2]
N_IMAGES = 20
BATCH = 2
BLOCKED = 10  # index of the image whose decode never returns in the killed run

# Runs the real CLI, except that decoding one chosen image blocks forever after leaving a
# marker file: the kill then lands at a known point (five batches journaled, three decoding)
# instead of racing a run that takes a fraction of a second.
STALL_THEN_RUN = """
import sys, time, pathlib
import screening.decode_pool as decode_pool
from screening.cli import main

blocked, marker = sys.argv[1], pathlib.Path(sys.argv[2])
load = decode_pool.DecodePool.load

def stalling_load(self, path, *args, **kwargs):
    if pathlib.Path(path).name == blocked:
        marker.write_text("stalled")
        time.sleep(600)
    return load(self, path, *args, **kwargs)

decode_pool.DecodePool.load = stalling_load
sys.argv = ["screen", *sys.argv[3:]]
main()
"""


def _journal_records(out: Path) -> list[dict]:
    """The finished-image lines of a journal; a line still being written (no newline yet) is skipped."""
    complete = journal_path(out).read_bytes().split(b"\n")[:-1]
    return [json.loads(line) for line in complete[1:]]


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the screening subprocess did not reach the kill point")
        time.sleep(0.05)


def _args(images: Path, meta: Path, out: Path, bundle: Path, *extra: str) -> list[str]:
    return ["folder", str(images), "--meta", str(meta), "--out", str(out), "--bundle", str(bundle),
            "--backend", "onnxruntime", "--batch-size", str(BATCH), "--workers", "2", "--quiet", *extra]


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_csv(tmp_path: Path, make_folder,
                                                               tiny_bundle: Path) -> None:
    images, meta = make_folder(N_IMAGES)
    blocked = sorted(p.name for p in images.iterdir())[BLOCKED]
    out, marker = tmp_path / "killed.csv", tmp_path / "stalled"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", STALL_THEN_RUN, blocked, str(marker), *_args(images, meta, out, tiny_bundle)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: process.poll() is not None or (
            marker.exists() and journal_path(out).exists() and len(_journal_records(out)) >= BLOCKED))
        assert process.poll() is None, process.communicate()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done = _journal_records(out)
    assert [r["image"] for r in done] == sorted(p.name for p in images.iterdir())[:BLOCKED]
    assert not out.exists() and lock_path(out).exists()
    # kill -9 can also land inside a write: leave half a line, as that would
    with open(journal_path(out), "ab") as fh:
        fh.write(b'{"image":"img_010.png","fingerp')

    resumed = CliRunner().invoke(cli, _args(images, meta, out, tiny_bundle, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stderr.splitlines() == [
        f"Warning: dropped a torn last line of {out}.journal (the previous run was killed mid-write)",
    ]
    summary = json.loads((tmp_path / "killed.summary.json").read_text())
    assert (summary["reused"], summary["screened"], summary["images"]) == (BLOCKED, N_IMAGES - BLOCKED, N_IMAGES)

    reference = tmp_path / "uninterrupted.csv"
    straight = CliRunner().invoke(cli, _args(images, meta, reference, tiny_bundle))
    assert straight.exit_code == 0, straight.output
    # the same CSV but for the times rows were screened; rows the killed run screened are new too
    assert rows_without(out) == rows_without(reference)
    # every image exactly once, in the CSV and in the compacted journal
    images_in_journal = [r["image"] for r in _journal_records(out)]
    assert sorted(images_in_journal) == sorted(p.name for p in images.iterdir())
    assert len(set(images_in_journal)) == N_IMAGES
    assert not lock_path(out).exists()
