"""The steps around the image reads on a network drive that stops answering: the folder listing,
the planning of the jobs and the report's thumbnails never wait for it past the time budget.

As in test_stalled_reads.py, a chosen call blocks, as on a share that stopped answering, until the
test lets the drive answer, and at most ``STALL_CAP_S``: code that waits for the drive is slow,
then passes its own checks, so each test bounds how long a step took rather than hanging.
"""

from __future__ import annotations

import builtins
import io
import os
import time
from pathlib import Path

import pytest

import folder_runner
from bundle_factory import lesion_rgb, write_image
from stalled_share import BUDGET_S, STALL_CAP_S, screen_on_share, within as _within
from screening.errors import InputError
from screening.images import discover_images
from screening.journal import journal_path, lock_path
from screening.manifest import load_manifest
from screening.metadata import DEFAULT_VOCABULARY
from screening.patients import read_patients
from screening.pipeline import plan_jobs
from screening.report.build import ReportRequest, build_report
from screening.stalled_reads import ImagesUnreachable


pytestmark = pytest.mark.usefixtures("no_default_bundle")


# -- the folder listing -----------------------------------------------------------------------------

def listing_stalled(images: Path) -> str:
    return (f"the images folder {images} stopped answering while it was being listed (nothing for "
            f"{BUDGET_S:g} s; a stalled network drive?): run the same command again once the drive answers")


def test_a_sub_folder_that_does_not_answer_stops_the_night_with_one_line(tmp_path, tiny_bundle, share):
    images, meta = folder_runner.small_folder(tmp_path)
    write_image(images / "2026-11-30" / "late.png", lesion_rgb(3))
    share.stall(images / "2026-11-30", "scandir")
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    started = time.monotonic()
    result = screen_on_share(images, meta, out, tiny_bundle)
    assert time.monotonic() - started < STALL_CAP_S / 2
    assert folder_runner.error_line(result, 2) == f"Error: {listing_stalled(images)}"
    assert share.blocked == ["scandir"]
    assert list(out.parent.iterdir()) == []  # not even a journal or a lock: the night had not begun
    check = screen_on_share(images, meta, out, tiny_bundle, "--check")  # --check stops where the night does
    assert folder_runner.error_line(check, 2) == f"Error: {listing_stalled(images)}"


def test_a_linked_image_that_does_not_answer_stops_the_listing_too(tmp_path, share):
    """A link's target is looked up while listing (it may lead into the run's own outputs)."""
    images, _ = folder_runner.small_folder(tmp_path)
    target = write_image(tmp_path / "elsewhere" / "linked.png", lesion_rgb(4))
    (images / "linked.png").symlink_to(target)
    share.stall(target, "lstat", "stat")
    with pytest.raises(ImagesUnreachable) as raised:
        _within(STALL_CAP_S / 2, lambda: discover_images(images, stall_s=BUDGET_S))
    assert str(raised.value) == listing_stalled(images)


def test_a_large_folder_that_lists_slowly_is_not_taken_for_a_stalled_one(tmp_path, monkeypatch):
    """A listing that goes on answering, however slowly in all, is never cut short: only
    a drive that says nothing for the whole budget is."""
    images = tmp_path / "images"
    images.mkdir()
    for index in range(30):
        (images / f"img_{index:02d}.jpg").write_bytes(b"\xff\xd8")
    real_scandir = os.scandir

    class SlowEntries:
        def __init__(self, entries) -> None:
            self.entries = entries

        def __enter__(self):
            return self

        def __exit__(self, *exc_info) -> None:
            self.entries.close()

        def __iter__(self):
            return self

        def __next__(self):
            time.sleep(0.05)  # 1.5 s for the folder: three budgets, each entry a tenth of one
            return next(self.entries)

        def close(self) -> None:
            self.entries.close()

    monkeypatch.setattr(os, "scandir", lambda *args: SlowEntries(real_scandir(*args)))
    found = discover_images(images, stall_s=BUDGET_S)
    assert len(found.images) == 30


def test_errors_of_the_listing_itself_are_raised_as_before(tmp_path):
    with pytest.raises(InputError, match="images folder not found"):
        discover_images(tmp_path / "nowhere", stall_s=BUDGET_S)


# -- planning: the image's metadata ---------------------------------------------------------------

def test_planning_never_waits_for_a_file_that_does_not_answer(tmp_path, share):
    images, meta = folder_runner.small_folder(tmp_path)
    share.stall(write_image(images / "stalled.png", lesion_rgb(5)), "stat")
    names = ["good_0.png", "good_1.png", "stalled.png"]
    table = read_patients(meta, images=names)
    jobs = _within(STALL_CAP_S / 2, lambda: plan_jobs(names, table, DEFAULT_VOCABULARY))
    assert [job.image for job in jobs] == names
    assert share.blocked == []


def test_a_file_whose_metadata_does_not_answer_is_a_retryable_error_row(tmp_path, tiny_bundle, share):
    """On a share that stopped answering for one file, every call on it blocks (stat, open's
    fstat): the file is an error row with the time-out, the night finishes, --resume retries it."""
    images, meta = folder_runner.small_folder(tmp_path)
    share.stall(write_image(images / "stalled.png", lesion_rgb(5)), "stat", "fstat")
    out = tmp_path / "results.csv"
    started = time.monotonic()
    result = screen_on_share(images, meta, out, tiny_bundle)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < STALL_CAP_S / 2
    rows = folder_runner.rows_by_image(out)
    assert rows["good_0.png"]["status"] == rows["good_1.png"]["status"] == "ok"
    assert (rows["stalled.png"]["status"], rows["stalled.png"]["error"]) == (
        "error", f"the file did not finish reading within the {BUDGET_S:g} s limit per image (a stalled network "
                 f"drive?)")
    share.answer()
    assert screen_on_share(images, meta, out, tiny_bundle, "--resume").exit_code == 0
    assert folder_runner.rows_by_image(out)["stalled.png"]["status"] == "ok"


# -- the patients CSV ---------------------------------------------------------------------------------

def meta_stalled(meta: Path) -> str:
    return (f"Error: the metadata CSV {meta} stopped answering while it was being read (nothing for "
            f"{BUDGET_S:g} s; a stalled network drive?): run the same command again once the drive answers")


def test_a_patients_csv_that_does_not_answer_stops_the_night_with_one_line(tmp_path, tiny_bundle, share):
    """The patients CSV on a share that went silent after it was looked up: the night stops with
    one line naming it (exit 2), as a stalled listing does, instead of waiting for ever."""
    images, meta = folder_runner.small_folder(tmp_path)
    share.stall_open(meta)
    out = tmp_path / "results.csv"
    result = _within(STALL_CAP_S / 2, lambda: screen_on_share(images, meta, out, tiny_bundle))
    assert folder_runner.error_line(result, 2) == meta_stalled(meta)
    assert not out.exists() and not journal_path(out).exists()


def test_screen_report_meta_that_does_not_answer_stops_with_one_line(tmp_path, tiny_bundle, share):
    images, meta = folder_runner.small_folder(tmp_path)
    out = tmp_path / "results.csv"
    assert screen_on_share(images, meta, out, tiny_bundle).exit_code == 0
    share.stall_open(meta)
    result = _within(STALL_CAP_S / 2, lambda: folder_runner.screen(
        "report", out, "--images", images, "--out", tmp_path / "report.html", "--meta", meta,
        "--bundle", tiny_bundle, "--decode-timeout", BUDGET_S))
    assert folder_runner.error_line(result, 2) == meta_stalled(meta)


def test_a_patients_csv_that_reads_slowly_is_not_taken_for_a_stalled_one(tmp_path, monkeypatch):
    """A large CSV on a slow share keeps arriving: the limit is a time without progress, so it is
    read whole even when reading it all takes longer than the limit."""
    meta = tmp_path / "patients.csv"
    notes = "x" * 2000  # a clinic's free-text column: few rows, many bytes
    meta.write_text("image,age,notes\n" + "".join(f"img_{i:04d}.png,{i % 90},{notes}\n" for i in range(2000)))
    real_open = builtins.open
    waited: list[float] = []

    def slow_open(file, *args, **kwargs):
        opened = real_open(file, *args, **kwargs)
        return _SlowFile(opened, waited) if isinstance(file, (str, os.PathLike)) and os.fspath(file) == os.fspath(meta) \
            else opened

    for module in (builtins, io):
        monkeypatch.setattr(module, "open", slow_open)
    table = read_patients(meta, stall_s=BUDGET_S)
    assert len(table) == 2000 and sum(waited) > 2 * BUDGET_S


class _SlowFile:
    """An open file on a slow drive: each read waits well within the limit (``waited`` adds it up)."""

    def __init__(self, file, waited: list[float]) -> None:
        self.file, self.waited = file, waited

    def read(self, *args):
        time.sleep(BUDGET_S * 0.4)
        self.waited.append(BUDGET_S * 0.4)
        return self.file.read(*args)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.file.close()


# -- the report's thumbnails ------------------------------------------------------------------------

def test_the_reports_thumbnails_never_wait_for_a_file_that_does_not_answer(tmp_path, tiny_bundle, share):
    """Images screened without --report get their thumbnails from the files when the report is
    built: a stalled file gets a note in place of its picture, not a report that never comes."""
    images, meta = folder_runner.small_folder(tmp_path, goods=3)
    out = tmp_path / "results.csv"
    assert screen_on_share(images, meta, out, tiny_bundle).exit_code == 0
    share.stall(images / "good_1.png", "fstat")
    report = tmp_path / "report.html"
    request = ReportRequest(results=out, images_dir=images, out=report, manifest=load_manifest(tiny_bundle),
                            read_timeout_s=BUDGET_S)
    stats = _within(STALL_CAP_S / 2, lambda: build_report(request))
    assert stats.pictures_made == 2
    assert "no picture: the file did not finish reading (a stalled network drive?)" in report.read_text()
    share.answer()  # the next report, with the drive back, pictures it
    assert build_report(request).pictures_made == 1


def test_screen_report_waits_for_a_stalled_thumbnail_file_at_most_its_decode_timeout(tmp_path, tiny_bundle, share):
    """`screen report --decode-timeout`, as `screen folder`'s: the reviewer's report is not held 30 s
    per file of a drive that stopped answering when the clinic chose a shorter limit."""
    images, meta = folder_runner.small_folder(tmp_path, goods=3)
    out = tmp_path / "results.csv"
    assert screen_on_share(images, meta, out, tiny_bundle).exit_code == 0
    share.stall(images / "good_1.png", "fstat")
    report = tmp_path / "report.html"
    result = _within(STALL_CAP_S / 4, lambda: folder_runner.screen(
        "report", out, "--images", images, "--out", report, "--bundle", tiny_bundle, "--decode-timeout", BUDGET_S))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Report: {report} (3 rows, 2 thumbnails made)\n"
    assert "no picture: the file did not finish reading (a stalled network drive?)" in report.read_text()


def test_screen_report_refuses_a_decode_timeout_that_is_not_above_zero(tmp_path, tiny_bundle):
    images, _ = folder_runner.small_folder(tmp_path)
    result = folder_runner.screen("report", tmp_path / "results.csv", "--images", images, "--bundle", tiny_bundle,
                                  "--decode-timeout", 0)
    assert folder_runner.error_line(result, 2) == ("Error: --decode-timeout must be above 0 and at most 86400 seconds "
                                                   "(a day), got 0")


def test_a_report_built_while_the_drive_is_gone_is_written_without_the_pictures(tmp_path, tiny_bundle, share):
    from screening.stalled_reads import MAX_STUCK_READS

    images, meta = folder_runner.small_folder(tmp_path, goods=MAX_STUCK_READS + 2)
    out = tmp_path / "results.csv"
    assert screen_on_share(images, meta, out, tiny_bundle).exit_code == 0
    for image in images.iterdir():
        share.stall(image, "fstat")
    report = tmp_path / "report.html"
    request = ReportRequest(results=out, images_dir=images, out=report, manifest=load_manifest(tiny_bundle),
                            read_timeout_s=BUDGET_S)
    stats = _within(STALL_CAP_S / 2, lambda: build_report(request))
    assert stats.pictures_made == 0 and stats.rows == MAX_STUCK_READS + 2
    assert len(share.blocked) == MAX_STUCK_READS  # then no more reads were tried
    assert report.exists()
    assert journal_path(out).exists() and not lock_path(out).exists()


def test_an_images_folder_that_does_not_answer_at_all_stops_the_night_with_one_line(tmp_path, tiny_bundle, share):
    """The whole share silent (the usual case): even looking the folder up blocks, before any listing."""
    images, meta = folder_runner.small_folder(tmp_path)
    share.stall(images, "lstat", "stat", "scandir")
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    started = time.monotonic()
    result = screen_on_share(images, meta, out, tiny_bundle)
    assert time.monotonic() - started < STALL_CAP_S / 2
    assert folder_runner.error_line(result, 2) == (
        f"Error: the images folder {images}, the metadata CSV {meta} or the output folder {out.parent} stopped "
        f"answering while they were being looked up (nothing for {BUDGET_S:g} s; a stalled network drive?): run "
        f"the same command again once the drive answers")
    assert list(out.parent.iterdir()) == []
