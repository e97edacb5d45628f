"""A run never reads its own outputs, never writes through what it was not asked to write:

- image discovery leaves out the folders the run writes into, however a link leads there;
- a --out name whose temp names would not fit its folder is refused up front, and a failed
  atomic write names the file, not /proc/self/fd/N;
- --log-file may not be an input or an output of the run, nor a symbolic link;
- the run history folder is checked up front, never followed through a link, and a history
  that cannot be written after the results is a warning, not a failed night.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from bundle_factory import lesion_rgb, write_image
from folder_runner import error_line, run_folder as run
from screening.atomic import atomic_write, temp_name_bytes
from screening.images import IMAGE_SUFFIXES, discover_images
from screening.journal import journal_path
from screening.output_paths import _IMAGE_SUFFIXES, OutputFolder, check_log_file, output_folders
from screening.progress import LogFile
from screening.results import history_folder, summary_path, write_history


pytestmark = pytest.mark.usefixtures("no_default_bundle")


def rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))


# -- 1. discovery never walks the run's own output folders -----------------------------------------

def test_a_link_to_the_results_folder_does_not_screen_the_runs_own_pictures(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    """The review's repro: images/results -> results/, with masks and report there; three nights."""
    images, meta = make_folder(3)
    results = tmp_path / "results"
    results.mkdir()
    (images / "results").symlink_to(results)
    out = results / "r.csv"
    for night in range(3):
        result = run(images, meta, out, tiny_bundle, "--report", results / "report.html",
                     "--save-masks", results / "masks", "--resume", "-q")
        assert result.exit_code == 0, result.output
        assert sorted(row["image"] for row in rows(out)) == ["img_000.jpg", "img_001.png", "img_002.png"]
        # One line per night says what was left out and why.
        warned = [line for line in result.stderr.splitlines() if "not walked" in line]
        assert warned == [f"Warning: linked folder results not walked: it is the folder of --out {out} "
                          f"({results}), which this run writes to; a run never screens its own outputs "
                          f"(masks, report pictures, results)"], result.stderr
        summary = json.loads(summary_path(out).read_text())
        assert summary["images"] == 3 and summary["ignored_files"] == []
    assert any((results / "masks").rglob("*.png")) and any((results / "report_files").rglob("*.jpg"))
    # The report does not list the run's pictures as images of the folder without a result.
    page = (results / "report.html").read_text()
    assert "mask.png" not in page and "thumbs/" not in page.replace("report_files/thumbs/", "")


def test_a_link_into_an_output_tree_is_not_walked(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    masks = tmp_path / "masks"
    out = tmp_path / "out" / "r.csv"
    out.parent.mkdir()
    assert run(images, meta, out, tiny_bundle, "--save-masks", masks).exit_code == 0
    (images / "outlines").symlink_to(masks)  # the masks folder itself
    result = run(images, meta, out, tiny_bundle, "--save-masks", masks, "--resume")
    assert result.exit_code == 0, result.output
    assert len(rows(out)) == 2
    assert f"linked folder outlines not walked: it is the --save-masks folder {masks}" in result.stderr


def test_discovery_leaves_out_output_folders_however_reached(tmp_path: Path) -> None:
    root, data = tmp_path / "images", tmp_path / "data"
    write_image(root / "a.png", lesion_rgb(1))
    write_image(data / "clinic" / "b.png", lesion_rgb(2))  # a real image beside the outputs
    write_image(data / "results" / "r_files" / "thumb.png", lesion_rgb(3))
    write_image(data / "results" / "old.png", lesion_rgb(4))
    write_image(data / "masks" / "deep" / "a.png.mask.png", lesion_rgb(5))
    (root / "data").symlink_to(data)  # a linked folder that holds the output folders
    (root / "deep").symlink_to(data / "masks" / "deep")  # a link into the middle of an output tree
    outputs = output_folders(data / "results" / "r.csv", data / "masks", data / "results" / "r.html")
    found = discover_images(root, outputs)
    assert found.images == ["a.png", "data/clinic/b.png"]
    assert [line.split(":")[0] for line in found.skipped] == [
        "linked folder deep not walked", "folder data/masks not walked", "folder data/results not walked"]
    assert "it is inside the --save-masks folder" in found.skipped[0]
    assert "it is the --save-masks folder" in found.skipped[1]
    # Without outputs, discovery is as before: everything linked is walked.
    assert len(discover_images(root).images) == 5  # deep/ and data/masks/deep are one folder


def test_discovery_still_walks_the_images_folder_inside_the_output_folder(tmp_path: Path) -> None:
    """results.csv beside images/ (the usual layout) and even --save-masks on a parent of the
    images folder: the images are screened, not left out as 'inside an output folder'."""
    root = tmp_path / "images"
    write_image(root / "a.png", lesion_rgb(1))
    write_image(root / "sub" / "b.png", lesion_rgb(2))
    outside = tmp_path / "elsewhere"
    write_image(outside / "c.png", lesion_rgb(3))
    (root / "more").symlink_to(outside)
    outputs = output_folders(tmp_path / "results.csv", save_masks=tmp_path, report=tmp_path / "report.html")
    found = discover_images(root, outputs)
    assert found.images == ["a.png", "more/c.png", "sub/b.png"] and found.skipped == []
    # A link back up to the output folder (which holds the images folder) is left out once.
    (root / "up").symlink_to(tmp_path)
    found = discover_images(root, outputs)
    assert found.images == ["a.png", "more/c.png", "sub/b.png"]
    assert len(found.skipped) == 1 and found.skipped[0].startswith("linked folder up not walked: it is the folder of --out")


def test_output_folders_name_what_they_are(tmp_path: Path) -> None:
    folders = output_folders(tmp_path / "r.csv", tmp_path / "m", tmp_path / "rep" / "x.html")
    assert [(f.path, f.whole) for f in folders] == [
        (tmp_path, False), (tmp_path / "r.history", True), (tmp_path / "m", True),
        (tmp_path / "rep", False), (tmp_path / "rep" / "x_files", True)]
    assert all(isinstance(f, OutputFolder) and f.what for f in folders)


# -- 5. a --out name too long for its temp names -------------------------------------------------------

def test_an_out_name_whose_temp_name_would_not_fit_is_refused_up_front(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    # r.summary.json has 242 + 13 = 255 bytes: it fits; its temp name (273 bytes) does not.
    out = tmp_path / ("r" * 242 + ".csv")
    assert len(summary_path(out).name) == 255
    assert error_line(run(images, meta, out, tiny_bundle)) == (
        f"Error: --out {out} is too long a file name for its folder ({'r' * 242}.summary.json is written "
        f"through a temp name 18 bytes longer, 273 bytes, the limit is 255): choose a name at least 18 bytes "
        f"shorter")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "images_patients.csv"]
    # The longest name that does fit: the night runs to the end.
    fits = tmp_path / ("r" * 224 + ".csv")
    assert temp_name_bytes(summary_path(fits)) == 255
    result = run(images, meta, fits, tiny_bundle)
    assert result.exit_code == 0, result.output
    assert summary_path(fits).is_file() and len(list(history_folder(fits).iterdir())) == 1


def test_a_failed_atomic_write_names_the_file_not_proc(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 250)  # fits; its temp name does not
    with pytest.raises(OSError) as caught:
        atomic_write(path, b"data")
    error = caught.value
    assert error.errno == errno.ENAMETOOLONG
    assert error.filename == str(path) and "/proc/self/fd" not in str(error)
    assert "temp name" in error.strerror and not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


# -- 7. --log-file ------------------------------------------------------------------------------------

def test_a_log_file_on_the_metadata_csv_is_refused_and_the_csv_untouched(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    before = meta.read_bytes()
    out = tmp_path / "results.csv"
    assert error_line(run(images, meta, out, tiny_bundle, "--log-file", meta)) == (
        f"Error: --log-file {meta} is the metadata CSV {meta}: the log's lines would be appended to it; "
        f"give another log file")
    hard = tmp_path / "night.log"
    os.link(meta, hard)
    assert "is the metadata CSV" in error_line(run(images, meta, out, tiny_bundle, "--log-file", hard))
    assert meta.read_bytes() == before and not out.exists()


def test_a_log_file_link_is_refused_not_followed(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    victim = tmp_path / "victim.txt"
    log = tmp_path / "screen.log"
    log.symlink_to(victim)  # dangling: following it would create the victim
    assert error_line(run(images, meta, tmp_path / "r.csv", tiny_bundle, "--log-file", log)) == (
        f"Error: --log-file {log} is a symbolic link (refusing to follow it): give the log file's own path; "
        f"a log is never written through a link")
    assert not victim.exists()
    victim.write_text("precious")
    assert error_line(run(images, meta, tmp_path / "r.csv", tiny_bundle, "--log-file", log)).startswith(
        f"Error: --log-file {log} is a symbolic link")
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("where, expected", [
    ("results.csv", "is the --out file"),
    ("results.csv.journal", "which the run writes beside --out"),
    ("results.summary.json", "which the run writes beside --out"),
    ("results.history/night.log", "which the run writes beside --out"),
    ("report.html", "is the --report file or inside its pictures folder"),
    ("report_files/night.log", "is the --report file or inside its pictures folder"),
    ("masks/night.log", "is inside the --save-masks folder"),
    ("images/night.log", "is inside the images folder"),
    ("night.jpg", "is an image (or named like one)"),
    ("job.toml", "is the --config file"),
    ("bundle/night.log", "is inside the model bundle"),
])
def test_a_log_file_that_is_an_input_or_output_is_refused(tmp_path: Path, make_folder, tiny_bundle: Path,
                                                          where: str, expected: str) -> None:
    images, meta = make_folder(1)
    bundle = tmp_path / "bundle"
    if where.startswith("bundle/"):
        import shutil

        shutil.copytree(tiny_bundle, bundle)
    config = tmp_path / "job.toml"
    config.write_text("quiet = true\n")
    log = tmp_path / where
    for folder in ("results.history", "report_files", "masks"):
        (tmp_path / folder).mkdir(exist_ok=True)
    result = run(images, meta, tmp_path / "results.csv", bundle if bundle.exists() else tiny_bundle,
                 "--config", config, "--report", tmp_path / "report.html", "--save-masks", tmp_path / "masks",
                 "--log-file", log)
    line = error_line(result)
    assert line.startswith(f"Error: --log-file {log} ") and expected in line, line
    assert (log == config or not log.exists()) and not (tmp_path / "results.csv").exists()
    assert config.read_text() == "quiet = true\n"


def test_a_log_file_that_holds_an_image_under_another_name_is_refused(tmp_path: Path, make_folder,
                                                                       tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    elsewhere = write_image(tmp_path / "photo.png", lesion_rgb(3))
    hard = tmp_path / "night.log"
    os.link(elsewhere, hard)
    before = elsewhere.read_bytes()
    assert "is an image (or named like one)" in error_line(
        run(images, meta, tmp_path / "r.csv", tiny_bundle, "--log-file", hard))
    assert elsewhere.read_bytes() == before


def test_a_good_log_file_still_works_for_any_job_command(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    log = tmp_path / "logs" / "screen.log"
    log.parent.mkdir()
    result = run(images, meta, tmp_path / "r.csv", tiny_bundle, "--log-file", log, "-q")
    assert result.exit_code == 0, result.output
    assert "Screened 1 image" in log.read_text()
    check_log_file(log)  # no inputs or outputs known: only the link check applies


def test_log_file_opening_refuses_links_and_fifos_without_hanging(tmp_path: Path) -> None:
    link = tmp_path / "l.log"
    link.symlink_to(tmp_path / "target.log")
    with pytest.raises(OSError) as caught:
        LogFile(str(link))
    assert caught.value.errno == errno.ELOOP and "symbolic link" in caught.value.strerror
    assert not (tmp_path / "target.log").exists()
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    with pytest.raises(OSError):  # no reader: ENXIO at once, not a night waiting for one
        LogFile(str(fifo))
    LogFile(os.devnull).close()  # a character device is fine
    plain = LogFile(str(tmp_path / "plain.log"))
    plain.write("hello")
    plain.close()
    assert (tmp_path / "plain.log").read_text().endswith(" hello\n")


def test_the_log_checks_image_suffixes_are_discoverys() -> None:
    assert _IMAGE_SUFFIXES == IMAGE_SUFFIXES


# -- 8. the run history folder --------------------------------------------------------------------------

def test_a_link_or_a_file_at_the_history_folder_is_refused_up_front(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    out = tmp_path / "results.csv"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    history_folder(out).symlink_to(elsewhere)
    assert error_line(run(images, meta, out, tiny_bundle)) == (
        f"Error: --out {out} would write its run history in {history_folder(out)}, which is a symbolic link "
        f"(refusing to follow it): remove the link, or choose another output name")
    history_folder(out).unlink()
    history_folder(out).write_text("not a folder")
    assert error_line(run(images, meta, out, tiny_bundle)) == (
        f"Error: --out {out} would write its run history in {history_folder(out)}, which is a file, not a "
        f"folder: move it away, or choose another output name")
    assert list(elsewhere.iterdir()) == [] and not out.exists() and not journal_path(out).exists()


def test_the_metadata_csv_at_the_history_name_is_refused(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, _ = make_folder(1)
    meta = tmp_path / "results.history"
    meta.write_text("image,age\nimg_000.jpg,40\n")
    out = tmp_path / "results.csv"
    assert error_line(run(images, meta, out, tiny_bundle)) == (
        f"Error: --out {out} would write {meta}, which is the metadata CSV {meta}: choose another output file")


def test_a_history_that_cannot_be_written_is_a_warning_and_the_report_still_comes(
        tmp_path: Path, make_folder, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, meta = make_folder(2)
    out, report = tmp_path / "results.csv", tmp_path / "report.html"
    import screening.results as results

    def full_disk(folder: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    monkeypatch.setattr(results, "_own_folder", full_disk)
    result = run(images, meta, out, tiny_bundle, "--report", report, "-q")
    assert result.exit_code == 0, result.output
    assert (f"Warning: the run history was not written: {history_folder(out)}: No space left on device; "
            f"the results {out} and its summary {summary_path(out)} are complete") in result.stderr
    assert len(rows(out)) == 2 and summary_path(out).is_file() and report.is_file()


def test_write_history_never_follows_a_link_planted_after_the_checks(tmp_path: Path) -> None:
    from screening.results import Summary

    summary = Summary(output="r.csv", bundle="b", backend="x", backend_note="", images=0, status={}, screened=0,
                      reused=0, ignored_files=[], metadata_rows_without_image=[], duplicate_keys={},
                      metadata_warnings=[], images_without_metadata=0, rows_with_warnings=0, top_risks=[],
                      elapsed_s=0.0, images_per_s=0.0, statement="")
    out = tmp_path / "r.csv"
    warnings: list[str] = []
    stamp = "2026-11-29T02:00:00+00:00"
    written = write_history(summary, out, stamp, warnings.append)
    assert written == history_folder(out) / "20261129T020000Z.summary.json" and written.is_file()
    assert warnings == []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for planted in ("link", "file"):
        (history_folder(out) / "20261129T020000Z.summary.json").unlink(missing_ok=True)
        if history_folder(out).is_dir() and not history_folder(out).is_symlink():
            history_folder(out).rmdir()
        else:
            history_folder(out).unlink()
        if planted == "link":
            history_folder(out).symlink_to(elsewhere)
        else:
            history_folder(out).write_text("x")
        assert write_history(summary, out, stamp, warnings.append) is None
        assert list(elsewhere.iterdir()) == []
    assert "it is a symbolic link (refusing to follow it)" in warnings[0]
    assert "a file, not a folder, has its name" in warnings[1]


def test_a_log_file_linked_to_a_stream_is_written_to(tmp_path):
    """`--log-file /dev/stdout` (cron, containers): a link, but to a pipe, not a file to damage."""
    from screening.output_paths import _log_clash
    from screening.progress import open_log

    read_end, write_end = os.pipe()
    link = tmp_path / "stdout"
    link.symlink_to(f"/proc/self/fd/{write_end}")
    assert _log_clash(link, None, None, None, None, None, None, None) is None
    with open_log(str(link)) as log:
        log.write("screen folder started\n")
    os.close(write_end)
    assert os.read(read_end, 100) == b"screen folder started\n"
    os.close(read_end)
    plain = tmp_path / "plain.log"
    plain.write_text("")
    (tmp_path / "to_plain").symlink_to(plain)
    assert "symbolic link" in _log_clash(tmp_path / "to_plain", None, None, None, None, None, None, None)


def test_results_named_like_their_own_history_folder_are_refused_up_front(tmp_path):
    from screening.errors import InputError
    from screening.output_paths import _check_history_folder

    with pytest.raises(InputError, match=r"is named like its own run-history folder \(x.history.*e.g. x.csv"):
        _check_history_folder(tmp_path / "x.history")
    _check_history_folder(tmp_path / "x.csv")  # the usual name passes


def test_the_report_leaves_out_the_run_outputs_whether_named_by_csv_or_journal(tmp_path):
    """`screen report` lists the folder's images as the run found them: its own outputs left out."""
    from screening.report.build import ReportRequest, run_outputs

    by_csv = run_outputs(ReportRequest(results=tmp_path / "r.csv", images_dir=None, out=tmp_path / "r.html"))
    by_journal = run_outputs(ReportRequest(results=tmp_path / "r.csv.journal", images_dir=None, out=tmp_path / "r.html"))
    assert [f.path for f in by_journal] == [f.path for f in by_csv]
    assert tmp_path / "r.history" in [f.path for f in by_journal]


@pytest.mark.parametrize("name", ["manifest.json", "classifier.onnx", "trt/results.csv"])
def test_results_over_a_bundle_file_are_refused_and_the_bundle_untouched(
        tmp_path: Path, make_folder, tiny_bundle: Path, name: str) -> None:
    """--out engines/starter/manifest.json (a tab completion one folder too far) wrote the results CSV
    over the bundle's manifest: that night 'succeeded', and every later one stopped with exit 3 until
    the bundle was installed again."""
    images, meta = make_folder(2)
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "trt").mkdir(exist_ok=True)
    before = {path.name: path.read_bytes() for path in bundle.iterdir() if path.is_file()}
    out = bundle / name
    assert error_line(run(images, meta, out, bundle)) == (
        f"Error: --out {out} is among the model bundle's files ({name} in {bundle}): choose another output file")
    assert {path.name: path.read_bytes() for path in bundle.iterdir() if path.is_file()} == before


def test_results_kept_beside_the_bundle_files_are_the_clinics_layout(tmp_path: Path, make_folder,
                                                                      tiny_bundle: Path) -> None:
    """A clinic that keeps its night's results in the bundle's folder is not refused after an
    upgrade: only the bundle's own files are protected, and they stay as they were."""
    images, meta = make_folder(2)
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = {path.name: path.read_bytes() for path in bundle.iterdir()}
    assert run(images, meta, bundle / "results.csv", bundle).exit_code == 0
    assert all((bundle / name).read_bytes() == data for name, data in before.items())
