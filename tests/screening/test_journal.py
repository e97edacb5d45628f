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
from screening.errors import InputError, OutputError, OutputLocked
from screening.journal import Journal, OutputLock, journal_path, lock_path
from screening.journal_lines import LINE_CHECKSUM, outcome_line
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
    assert header["bundle"] == manifest.identity and header["segmenter_sha256"] == manifest.segmenter.sha256
    assert header["manifest_sha256"] == manifest.digest and manifest.identity.startswith("tiny@1.0+")
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
        fh.write(outcome_line(outcome("b.png")).encode()[:40])
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
    assert json.loads(lines(journal_path(out))[0])["bundle"] == manifest.identity


def test_unreadable_lines_are_counted_and_those_images_redone(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png")])
    with open(journal_path(out), "ab") as fh:
        fh.write(b"\x00\x00garbage\n{\"image\": 3}\n")
        fh.write(outcome_line(outcome("c.png")).encode() + b"\n")
    with Journal.open(out, manifest, resume=True) as journal:
        assert sorted(journal.finished) == ["a.png", "c.png"]
        assert journal.notes == [f"ignored 2 unreadable lines of {journal_path(out)} (line 3: not JSON "
                                 f"(JSONDecodeError)); those images are screened again"]


def test_journal_of_another_bundle_is_refused(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    other = build_bundle(tmp_path / "other", version="2.0")
    with Journal.open(out, other, resume=False) as journal:
        journal.append([outcome("a.png")])
    with pytest.raises(InputError) as info:
        Journal.open(out, manifest, resume=True, on_bundle_change="fail")
    seg, cls = manifest.segmenter.sha256[:12], manifest.classifier.sha256[:12]
    assert str(info.value) == (
        f"{out}.journal holds results of bundle {other.identity} (manifest sha256 {other.digest[:12]}, "
        f"segmenter sha256 {seg}, classifier sha256 {cls}) but this run uses {manifest.identity} "
        f"(manifest sha256 {manifest.digest[:12]}, segmenter sha256 {seg}, classifier sha256 {cls}): "
        f"delete it, or pass --on-bundle-change rescreen, to screen everything with this bundle")


def test_journal_of_another_bundle_is_replaced_by_default(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    other = build_bundle(tmp_path / "other", version="2.0")
    with Journal.open(out, other, resume=False) as journal:
        journal.append([outcome("a.png")])
    with Journal.open(out, manifest, resume=True) as journal:
        assert journal.finished == {}  # nothing of the other bundle is reused
        assert journal.notes == [f"{journal_path(out)} holds results of bundle {other.identity}, this run "
                                 f"uses {manifest.identity}: screening every image again with the new "
                                 f"bundle (--on-bundle-change fail stops instead)"]
    assert json.loads(lines(journal_path(out))[0])["bundle"] == manifest.identity


def test_an_edited_manifest_is_another_bundle(tmp_path: Path, manifest) -> None:
    from dataclasses import replace
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png")])
    edited = replace(manifest, temperature=manifest.temperature * 2)  # same name, version, ONNX files
    assert edited.tag == manifest.tag and edited.identity != manifest.identity
    with pytest.raises(InputError, match="holds results of bundle"):
        Journal.open(out, edited, resume=True, on_bundle_change="fail")


def test_the_header_names_the_backend_and_another_backend_is_not_reused(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False, backend="onnxruntime") as journal:
        journal.append([outcome("a.png")])
    assert json.loads(lines(journal_path(out))[0])["backend"] == "onnxruntime"
    assert Journal.preview(out, manifest, resume=True, backend="tensorrt") == (
        f"journal: {journal_path(out)} holds results screened on onnxruntime, this run uses tensorrt: every image "
        f"will be screened again (--backend onnxruntime reuses them; --on-bundle-change fail stops instead)")
    with pytest.raises(InputError, match="holds results screened on onnxruntime but this run uses tensorrt"):
        Journal.preview(out, manifest, resume=True, backend="tensorrt", on_bundle_change="fail")
    with pytest.raises(InputError, match="pass --backend onnxruntime to reuse them"):
        Journal.open(out, manifest, resume=True, backend="tensorrt", on_bundle_change="fail")
    with Journal.open(out, manifest, resume=True, backend="tensorrt") as journal:
        assert journal.finished == {} and "screening every image again on tensorrt" in journal.notes[0]
    assert json.loads(lines(journal_path(out))[0])["backend"] == "tensorrt"


def test_a_journal_that_does_not_name_its_backend_is_reused_with_a_note(tmp_path: Path, manifest) -> None:
    """A journal of an earlier version: a night after the upgrade reuses it, and says so."""
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png")])
    assert "backend" not in lines(journal_path(out))[0] or json.loads(lines(journal_path(out))[0])["backend"] == ""
    with Journal.open(out, manifest, resume=True, backend="tensorrt") as journal:
        assert sorted(journal.finished) == ["a.png"]
        assert journal.notes == [f"{journal_path(out)} does not say which backend screened its results (an earlier "
                                 f"version of screen wrote it): they are reused as screened on tensorrt; delete it "
                                 f"to screen everything again"]
        journal.compact([outcome("a.png")])
    assert json.loads(lines(journal_path(out))[0])["backend"] == "tensorrt"  # said once, then recorded


def test_lines_that_do_not_fit_the_bundle_are_dropped_and_redone(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png"), outcome("b.png")])
    path = journal_path(out)
    text = path.read_text().replace('"probabilities":[0.25,0.25,0.25,0.25]', '"probabilities":[0.5,0.5]', 1)
    path.write_text(text)
    with Journal.open(out, manifest, resume=True) as journal:
        assert sorted(journal.finished) == ["b.png"]
        assert journal.notes == [f"ignored 1 unreadable line of {path} (line 2: 2 probabilities for the "
                                 f"bundle's 4 classes); those images are screened again"]


def test_a_line_changed_into_other_valid_json_is_dropped_and_redone(tmp_path: Path, manifest) -> None:
    """A lesion area changed on a share that flips bytes: still JSON, its numbers still agreeing,
    but its checksum no longer its content's. Its image is screened again, never copied."""
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png"), outcome("b.png")])
    path = journal_path(out)
    header, first, second = lines(path)
    assert json.loads(header)["line_checksum"] == LINE_CHECKSUM
    changed = json.loads(first)
    changed["lesion_area"] = 0.7
    path.write_text("\n".join([header, json.dumps(changed), second]) + "\n")
    with Journal.open(out, manifest, resume=True) as journal:
        assert sorted(journal.finished) == ["b.png"]
        assert journal.notes == [f"ignored 1 unreadable line of {path} (line 2: checksum {changed['checksum']!r} "
                                 f"does not match the line (changed since it was written)); those images are "
                                 f"screened again"]


def test_a_line_whose_checksum_was_cut_off_is_dropped_and_redone(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png"), outcome("b.png")])
    path = journal_path(out)
    header, first, second = lines(path)
    stripped = {k: v for k, v in json.loads(first).items() if k != "checksum"}
    path.write_text("\n".join([header, json.dumps(stripped), second]) + "\n")
    with Journal.open(out, manifest, resume=True) as journal:
        assert sorted(journal.finished) == ["b.png"]
        assert journal.notes == [f"ignored 1 unreadable line of {path} (line 2: no checksum, though its journal's "
                                 f"header says every line has one); those images are screened again"]


def test_a_journal_of_a_version_without_line_checksums_is_reused_then_rewritten_with_them(
        tmp_path: Path, manifest) -> None:
    """An earlier version's journal (no line_checksum in its header, none on its lines) reads as
    before; the run that finishes rewrites it with checksums, and from then on they are required."""
    out = tmp_path / "results.csv"
    path = journal_path(out)
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png"), error_outcome("b.png", "f", "empty file (0 bytes)")])
    header, *rest = lines(path)
    older = {k: v for k, v in json.loads(header).items() if k != "line_checksum"}
    unsummed = [{k: v for k, v in json.loads(line).items() if k != "checksum"} for line in rest]
    path.write_text("\n".join(json.dumps(line) for line in [older, *unsummed]) + "\n")
    with Journal.open(out, manifest, resume=True) as journal:
        assert sorted(journal.finished) == ["a.png", "b.png"] and journal.notes == []
        journal.append([outcome("c.png")])  # a resumed run's new line carries one already
        journal.compact(list(journal.finished.values()) + [outcome("c.png")])
    header, *rest = lines(path)
    assert json.loads(header)["line_checksum"] == LINE_CHECKSUM and all("checksum" in json.loads(line) for line in rest)
    with Journal.open(out, manifest, resume=True) as journal:
        assert sorted(journal.finished) == ["a.png", "b.png", "c.png"] and journal.notes == []


def test_lines_of_an_interrupted_run_stay_new_until_a_run_finishes(tmp_path: Path, manifest) -> None:
    out = tmp_path / "results.csv"
    with Journal.open(out, manifest, resume=False) as journal:
        journal.append([outcome("a.png")])  # then killed: no compact
    with Journal.open(out, manifest, resume=True) as journal:
        assert journal.fresh == {"a.png"}
        journal.append([outcome("b.png")])
        journal.compact([outcome("a.png"), outcome("b.png")])  # the run finished
    with Journal.open(out, manifest, resume=True) as journal:
        assert journal.fresh == set() and sorted(journal.finished) == ["a.png", "b.png"]


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

HOLD = """
import sys, time
from screening.journal import OutputLock
lock = OutputLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def _holder(out: Path) -> subprocess.Popen:
    """Another process that takes the lock of ``out`` and keeps it until killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


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


def test_lock_held_by_another_process_blocks_and_names_it(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    holder = _holder(out)
    try:
        with pytest.raises(OutputLocked) as info:
            OutputLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert str(info.value) == (f"{out} is being written by another screen run (pid {holder.pid} on "
                               f"{socket.gethostname()}): wait for it to finish")


def test_a_killed_holder_never_blocks_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    holder = _holder(out)
    holder.kill()  # SIGKILL: no clean-up code runs, the lock file stays behind
    holder.wait()
    assert json.loads(lock_path(out).read_text())["pid"] == holder.pid
    with OutputLock(out) as lock:  # the kernel released the lock with the process
        assert lock.notes == []
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()


def test_a_pid_file_left_by_anyone_is_not_a_lock(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    lock_path(out).write_text(json.dumps({"pid": os.getpid(), "host": "other-host"}))
    with OutputLock(out):
        pass


CONTEND = """
import os, sys, time
from screening.errors import OutputLocked
from screening.journal import OutputLock
out, inside, start = sys.argv[1:4]
while not os.path.exists(start):
    time.sleep(0.001)
held = overlaps = 0
deadline = time.monotonic() + 1.5
while time.monotonic() < deadline:
    lock = OutputLock(out)
    try:
        lock.acquire()
    except OutputLocked:
        continue
    held += 1
    try:
        os.close(os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        overlaps += 1
    else:
        time.sleep(0.002)
        os.unlink(inside)
    lock.release()
print(held, overlaps)
"""


def test_twenty_simultaneous_starters_never_both_hold_the_lock(tmp_path: Path) -> None:
    out, inside, start = tmp_path / "results.csv", tmp_path / "inside", tmp_path / "start"
    starters = [subprocess.Popen([sys.executable, "-c", CONTEND, str(out), str(inside), str(start)],
                                 stdout=subprocess.PIPE, text=True) for _ in range(20)]
    start.touch()  # all released at once, hammering acquire/release for 1.5 s each
    counts = [tuple(map(int, starter.communicate(timeout=120)[0].split())) for starter in starters]
    assert all(starter.returncode == 0 for starter in starters)
    held = sum(h for h, _ in counts)
    overlaps = sum(o for _, o in counts)
    assert held >= 20, counts  # the lock really changed hands many times
    assert overlaps == 0, f"{overlaps} of {held} acquisitions found another holder inside"
    assert not lock_path(out).exists()


def test_lock_does_not_follow_a_planted_link(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    target = tmp_path / "elsewhere"
    lock_path(out).symlink_to(target)
    with pytest.raises(OutputError) as info:
        OutputLock(out).acquire()
    assert str(info.value) == f"cannot create the lock file {out}.lock: it is a symbolic link"
    assert not target.exists()


def test_probe_says_it_cannot_open_the_lock_file_not_create_it(tmp_path: Path) -> None:
    # The probe (screen folder --check, screen report) never creates the lock file: a message
    # saying "create" would send the reader looking at folder permissions.
    out = tmp_path / "results.csv"
    lock_path(out).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError) as info:
        OutputLock(out).probe()
    assert str(info.value) == f"cannot open the lock file {out}.lock: it is a symbolic link"
    assert not (tmp_path / "elsewhere").exists()


def test_temp_files_left_by_a_killed_run_are_removed_under_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    left = [tmp_path / ".results.csv.k2j3h4.tmp", tmp_path / ".results.csv.journal.a1b2.tmp"]
    for path in left:
        path.write_text("image,patient_id\nx.jpg,P1\n")
    (tmp_path / ".other.csv.a1b2.tmp").write_text("another output's")
    with OutputLock(out) as lock:
        assert sorted(lock.notes) == sorted(f"removed {path}, left by an interrupted run" for path in left)
    assert [p.name for p in tmp_path.iterdir()] == [".other.csv.a1b2.tmp"]
