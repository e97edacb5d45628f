"""Tests for screening.journal: the append-only results journal and the output lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bundle_factory import build_bundle
from screening.errors import InputError, OutputLocked
from screening.journal import Journal, OutputLock, journal_path, lock_path
from screening.manifest import load_manifest
from screening.results import Outcome, error_outcome


@pytest.fixture(scope="module")
def manifest(tiny_bundle: Path):
    return load_manifest(tiny_bundle)


def outcome(image: str, risk: float = 0.5) -> Outcome:
    return Outcome(image=image, fingerprint="10:20:1,1,1", status="ok",
                   probabilities=(0.25, 0.25, risk / 2, risk / 2), risk=risk, prediction="nv",
                   confidence=0.25, lesion_area=0.1)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_fresh_journal_has_a_header_then_one_line_per_image(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        assert journal.finished == {} and journal.notes == []
        journal.append([outcome("a.png"), error_outcome("b.png", "1:2:3,4,5", "truncated image file")])
        journal.append([outcome("c.png")])
    path = journal_path(out)
    assert path.name == "results.csv.journal"
    header = json.loads(lines(path)[0])
    assert header["bundle"] == "tiny@1.0" and header["segmenter_sha256"] == manifest.segmenter.sha256
    assert [json.loads(line)["image"] for line in lines(path)[1:]] == ["a.png", "b.png", "c.png"]


def test_resume_reads_back_exactly_what_was_written(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    written = [outcome("a.png", 1 / 3), error_outcome("b.png", "f", "empty file (0 bytes)")]
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append(written)
    with Journal.open(out, manifest, resume=True) as journal:
        assert journal.finished == {o.image: o for o in written}
        assert journal.notes == []


def test_existing_journal_without_resume_is_an_error(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    Journal.open(out, manifest, resume=False).close()
    with pytest.raises(InputError) as info:
        Journal.open(out, manifest, resume=False)
    assert str(info.value) == (f"{out}.journal exists from an earlier run: pass --resume to reuse its "
                               f"results (only new or changed images are screened), or delete it to "
                               f"screen everything again")
    assert info.value.exit_code == 2


def test_torn_last_line_is_dropped_and_appends_continue_cleanly(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png")])
    path = journal_path(out)
    with open(path, "ab") as fh:  # what kill -9 in the middle of a write leaves behind
        fh.write(outcome("b.png").to_json().encode()[:40])
    with Journal.open(out, manifest, resume=True) as journal:
        assert list(journal.finished) == ["a.png"]
        assert journal.notes == [f"dropped a torn last line of {path} (the previous run was killed mid-write)"]
        journal.append([outcome("b.png")])
    with Journal.open(out, manifest, resume=True) as journal:
        assert list(journal.finished) == ["a.png", "b.png"] and journal.notes == []


def test_journal_killed_while_writing_its_header_starts_afresh(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    journal_path(out).write_bytes(b'{"format":"screening-jou')
    with Journal.open(out, manifest, resume=True) as journal:
        assert journal.finished == {}
    assert json.loads(lines(journal_path(out))[0])["bundle"] == "tiny@1.0"


def test_unreadable_lines_are_counted_and_those_images_redone(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png")])
    with open(journal_path(out), "ab") as fh:
        fh.write(b"\x00\x00garbage\n{\"image\": 3}\n")
        fh.write(outcome("c.png").to_json().encode() + b"\n")
    with Journal.open(out, manifest, resume=True) as journal:
        assert sorted(journal.finished) == ["a.png", "c.png"]
        assert journal.notes == [f"ignored 2 unreadable lines of {journal_path(out)}; "
                                 f"those images are screened again"]


def test_journal_of_another_bundle_is_refused(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    other = build_bundle(tmp_path / "other", version="2.0")
    with Journal.open(out, other, resume=False) as journal:
        journal.append([outcome("a.png")])
    with pytest.raises(InputError) as info:
        Journal.open(out, manifest, resume=True)
    seg, cls = manifest.segmenter.sha256[:12], manifest.classifier.sha256[:12]
    assert str(info.value) == (
        f"{out}.journal holds results of bundle tiny@2.0 (segmenter sha256 {seg}, classifier sha256 "
        f"{cls}) but this run uses tiny@1.0 (segmenter sha256 {seg}, classifier sha256 {cls}): "
        f"delete it to screen everything with this bundle")


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    journal_path(out).write_text("image,risk\na.png,0.5\n")
    with pytest.raises(InputError, match=r"results.csv.journal is not a screening journal: delete it "
                                         r"or choose another --out$"):
        Journal.open(out, manifest, resume=True)


def test_compact_keeps_exactly_the_final_outcomes(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    journal = Journal.open(out, manifest, resume=False)
    journal.append([outcome("a.png", 0.1), outcome("gone.png")])
    journal.append([outcome("a.png", 0.2)])
    journal.compact([outcome("a.png", 0.2)])
    with Journal.open(out, manifest, resume=True) as again:
        assert again.finished == {"a.png": outcome("a.png", 0.2)}
    assert len(lines(journal_path(out))) == 2


# -- lock -----------------------------------------------------------------------------------------

def _write_lock(out: Path, pid: int, host: str | None = None) -> None:
    lock_path(out).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname()}))


def test_lock_names_its_owner_and_is_released(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    with OutputLock(out) as lock:
        assert json.loads(lock_path(out).read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
        assert lock.notes == []
        with pytest.raises(OutputLocked) as info:  # a second run in this process
            OutputLock(out).acquire()
        assert info.value.exit_code == 5
    assert not lock_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_lock_of_a_running_process_blocks(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, owner.pid)
        with pytest.raises(OutputLocked) as info:
            OutputLock(out).acquire()
    finally:
        owner.kill()
        owner.wait()
    assert str(info.value) == (f"{out} is being written by another screen run (pid {owner.pid} on "
                               f"{socket.gethostname()}): wait for it to finish, or delete "
                               f"{out}.lock if no such run exists")


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(out, dead.pid)
    with OutputLock(out) as lock:
        assert lock.notes == [f"took over the lock {out}.lock left by process {dead.pid}, "
                              f"which is no longer running"]
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()


def test_own_pid_left_by_an_earlier_process_is_stale(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    _write_lock(out, os.getpid())  # e.g. a container restarted with the same pid
    with OutputLock(out) as lock:
        assert len(lock.notes) == 1


def test_lock_from_another_host_or_unreadable_blocks(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    _write_lock(out, 1, host="other-host")
    with pytest.raises(OutputLocked, match=r"\(pid 1 on other-host\)"):
        OutputLock(out).acquire()
    lock_path(out).write_text("garbage")
    with pytest.raises(OutputLocked) as info:
        OutputLock(out).acquire()
    assert str(info.value).startswith(f"{out} is being written by another screen run: wait")
