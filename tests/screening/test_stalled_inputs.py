"""The files a night reads besides the images, on a network drive that stops answering: the model
bundle, the job config, the log file, and the results that `screen report` reads back. Each one
ends the command with one line within the time limit (exit 2), never a wait for ever.

The stall is simulated as in test_stalled_listing.py (stalled_share.Share): opening the chosen
file blocks until the test lets the drive answer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import folder_runner
from stalled_share import BUDGET_S, STALL_CAP_S, screen_on_share, within
from screening.backends.onnxrt import OnnxRuntimeBackend
from screening.errors import InputError
from screening.journal import journal_path
from screening.manifest import load_manifest


pytestmark = pytest.mark.usefixtures("no_default_bundle")


# -- the model bundle --------------------------------------------------------------------------------

def bundle_stalled(bundle: Path) -> str:
    return (f"Error: the model bundle {bundle} stopped answering while it was being read (nothing for "
            f"{BUDGET_S:g} s; a stalled network drive?): run the same command again once the drive answers")


@pytest.mark.parametrize("stalled_file", ["manifest.json", "classifier.onnx"])
def test_a_bundle_that_does_not_answer_stops_the_night_with_one_line(tmp_path, tiny_bundle, share, stalled_file):
    """The manifest, or a model file while its sha256 is checked, on a share gone silent."""
    # A copy of its own: the reading thread a stalled case leaves behind goes on (to the model
    # files) once its drive answers, and must not walk into the next case's stalled file.
    tiny_bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    images, meta = folder_runner.small_folder(tmp_path)
    share.stall_open(tiny_bundle / stalled_file)
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    result = within(STALL_CAP_S / 2, lambda: screen_on_share(images, meta, out, tiny_bundle))
    assert folder_runner.error_line(result, 2) == bundle_stalled(tiny_bundle)
    assert share.blocked == ["open"]
    assert list(out.parent.iterdir()) == []  # the night had not begun: nothing written, nothing locked
    check = within(STALL_CAP_S / 2, lambda: screen_on_share(images, meta, out, tiny_bundle, "--check"))
    assert folder_runner.error_line(check, 2) == bundle_stalled(tiny_bundle)  # --check stops where the night does


def test_a_model_file_that_stops_answering_after_its_check_stops_onnx_runtime_too(tmp_path, tiny_bundle, share):
    """ONNX Runtime reads the model again (the bytes it runs are the bytes checked): a share that
    went silent in between ends the start-up with the same line."""
    manifest = load_manifest(tiny_bundle, stall_s=BUDGET_S)
    share.stall_open(tiny_bundle / manifest.classifier.file)

    def enter() -> None:
        with OnnxRuntimeBackend(tiny_bundle, manifest, threads=1, stall_s=BUDGET_S):
            pass

    with pytest.raises(InputError) as raised:
        within(STALL_CAP_S / 2, enter)
    assert f"Error: {raised.value}" == bundle_stalled(tiny_bundle)


# -- screen report: the results it reads back ---------------------------------------------------------

def results_stalled(results: Path) -> str:
    return (f"Error: the results {results} stopped answering while they were being read (nothing for {BUDGET_S:g} s; "
            f"a stalled network drive?): run the same command again once the drive answers")


def _report(results: Path, images: Path, bundle: Path, tmp_path: Path):
    return folder_runner.screen("report", results, "--images", images, "--out", tmp_path / "report.html",
                                "--bundle", bundle, "--decode-timeout", BUDGET_S)


@pytest.mark.parametrize("named, stalled", [("results.csv", "results.csv"),
                                            ("results.csv", "results.csv.journal"),
                                            ("results.csv.journal", "results.csv.journal")])
def test_screen_report_on_results_that_do_not_answer_stops_with_one_line(tmp_path, tiny_bundle, share, named, stalled):
    """The results CSV, the journal beside it (read to match the pictures) or the journal named
    instead (a run that did not finish), on a share gone silent since the night."""
    images, meta = folder_runner.small_folder(tmp_path)
    out = tmp_path / "results.csv"
    assert screen_on_share(images, meta, out, tiny_bundle).exit_code == 0
    share.stall_open(tmp_path / stalled)
    result = within(STALL_CAP_S / 2, lambda: _report(tmp_path / named, images, tiny_bundle, tmp_path))
    assert folder_runner.error_line(result, 2) == results_stalled(tmp_path / named)
    assert not (tmp_path / "report.html").exists()
    share.answer()  # the drive is back: the same command writes the report
    assert _report(tmp_path / named, images, tiny_bundle, tmp_path).exit_code == 0
    assert journal_path(out).exists()


def test_screen_report_on_a_summary_that_does_not_answer_stops_with_one_line(tmp_path, tiny_bundle, share):
    images, meta = folder_runner.small_folder(tmp_path)
    out = tmp_path / "results.csv"
    assert screen_on_share(images, meta, out, tiny_bundle).exit_code == 0
    share.stall_open(tmp_path / "results.summary.json")
    result = within(STALL_CAP_S / 2, lambda: _report(out, images, tiny_bundle, tmp_path))
    assert folder_runner.error_line(result, 2) == results_stalled(out)


# -- the job config and the log file --------------------------------------------------------------------

def test_a_job_config_that_does_not_answer_stops_with_one_line(tmp_path, share):
    """--config is read before --decode-timeout is known (the config may set it): the command waits
    the default limit, 30 s; here the same read with a shorter one."""
    from screening.cli.job import read_config

    config = tmp_path / "night.toml"
    config.write_text('meta = "patients.csv"\n')
    share.stall_open(config)
    with pytest.raises(InputError) as raised:
        within(STALL_CAP_S / 2, lambda: read_config(config, stall_s=BUDGET_S))
    assert str(raised.value) == (
        f"the job config {config} stopped answering while it was being read (nothing for {BUDGET_S:g} s; a stalled "
        f"network drive?): run the same command again once the drive answers")
    share.answer()
    assert read_config(config) == b'meta = "patients.csv"\n'


def test_a_log_file_that_does_not_answer_stops_the_night_before_it_begins(tmp_path, tiny_bundle, share):
    images, meta = folder_runner.small_folder(tmp_path)
    log = tmp_path / "logs" / "night.log"
    log.parent.mkdir()
    log.write_text("2026-11-30T02:00:00+00:00 last night's lines\n")
    share.stall(log, "lstat", "stat", "open")
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    result = within(STALL_CAP_S / 2, lambda: screen_on_share(images, meta, out, tiny_bundle, "--log-file", log))
    assert folder_runner.error_line(result, 2) == (
        f"Error: the --log-file {log} or the paths it is checked against stopped answering while they were being "
        f"looked up (nothing for {BUDGET_S:g} s; a stalled network drive?): run the same command again once the "
        f"drive answers")
    assert list(out.parent.iterdir()) == []


def test_opening_a_log_file_that_does_not_answer_is_an_error_that_says_so(tmp_path, share):
    from screening.progress import LogFile

    log = tmp_path / "night.log"
    log.write_text("")
    share.stall(log, "open")
    with pytest.raises(OSError) as raised:
        within(STALL_CAP_S / 2, lambda: LogFile(str(log), stall_s=BUDGET_S))
    assert raised.value.strerror == (
        f"it stopped answering while it was being opened (nothing for {BUDGET_S:g} s; a stalled network drive?): "
        f"run the same command again once the drive answers")


def test_a_log_file_that_stops_answering_during_the_night_stops_the_log_not_the_night(
        tmp_path, tiny_bundle, share, monkeypatch):
    """The log is the night's record, not its product: one warning, and the results are written."""
    from screening import progress

    images, meta = folder_runner.small_folder(tmp_path)
    log = tmp_path / "night.log"
    real_open_log = progress.open_log

    class GoesSilent:
        """The log's file: its share stops answering once the first line ("started") is written."""

        def __init__(self, handle) -> None:
            self.handle, self.lines = handle, 0

        def write(self, text: str) -> int:
            if self.lines:
                share._block("write")
            self.lines += 1
            return self.handle.write(text)

        def flush(self) -> None:
            self.handle.flush()

        def close(self) -> None:
            self.handle.close()

    monkeypatch.setattr(progress, "open_log", lambda path: GoesSilent(real_open_log(path)))
    out = tmp_path / "results.csv"
    result = within(STALL_CAP_S / 2, lambda: screen_on_share(images, meta, out, tiny_bundle, "--log-file", log))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"Warning: cannot write the log file {log} (it stopped answering for {BUDGET_S:g} s; a stalled network "
        f"drive?); logging stopped"]
    assert share.blocked == ["write"]  # tried once, then no more
    assert [row["status"] for row in folder_runner.rows_by_image(out).values()] == ["ok", "ok"]
    assert len(log.read_text().splitlines()) == 1


def test_check_stops_with_one_line_where_the_output_folder_does_not_answer(tmp_path, tiny_bundle, share):
    """--check reads the lock and the journal the night would find: on a silent share it stops as
    the night would, with a line, not a wait (the night's writes are the watchdog's: test_stalled_outputs)."""
    images, meta = folder_runner.small_folder(tmp_path)
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    assert screen_on_share(images, meta, out, tiny_bundle).exit_code == 0
    share.stall(journal_path(out), "open")  # the lock file is gone after the night: its journal is read
    result = within(STALL_CAP_S / 2, lambda: screen_on_share(images, meta, out, tiny_bundle, "--check", "--resume"))
    assert folder_runner.error_line(result, 2) == (
        f"Error: the output folder {out.parent} stopped answering while its lock and journal were being read (nothing "
        f"for {BUDGET_S:g} s; a stalled network drive?): run the same command again once the drive answers")


def test_screen_report_on_a_pictures_folder_that_does_not_answer_stops_with_one_line(tmp_path, tiny_bundle, share):
    """The pictures the night recorded (REPORT_files/views.jsonl) are read back before the page."""
    from screening.report.render import asset_folder

    images, meta = folder_runner.small_folder(tmp_path)
    out, report = tmp_path / "results.csv", tmp_path / "report.html"
    assert screen_on_share(images, meta, out, tiny_bundle, "--report", report).exit_code == 0
    share.stall_open(asset_folder(report) / "views.jsonl")
    result = within(STALL_CAP_S / 2, lambda: _report(out, images, tiny_bundle, tmp_path))
    assert folder_runner.error_line(result, 2) == (
        f"Error: the report's pictures folder {asset_folder(report)} stopped answering while it was being read "
        f"(nothing for {BUDGET_S:g} s; a stalled network drive?): run the same command again once the drive answers")
