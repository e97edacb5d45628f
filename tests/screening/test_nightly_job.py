"""The nightly job around `screen folder`: --check, --column, --config, --log-file, the run history,
upgrades under --resume, and the summary's audit fields."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from functools import partial
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bundle_factory import build_bundle, segmenter_model
from folder_runner import run_folder, screen
from screening.journal import journal_path
from screening.progress import Progress

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


pytestmark = pytest.mark.usefixtures("no_default_bundle")


run = partial(run_folder, batch_size=3, workers=2)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- --check -------------------------------------------------------------------------------------

def test_check_reports_and_writes_nothing(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(5)
    meta.write_text(meta.read_text() + "ghost.png,P9,40,male,back\n")
    (images / "notes.txt").write_text("x")
    before = files_under(tmp_path)
    result = run(images, meta, tmp_path / "results.csv", tiny_bundle, "--check")
    assert result.exit_code == 0, result.output
    assert files_under(tmp_path) == before  # no CSV, journal, lock, summary or history
    lines = result.stdout.splitlines()
    assert lines[0] == "images: 5 found (1 other files ignored)"
    assert lines[1] == "metadata: 6 rows; 5 images matched, 0 without a row; 1 rows without an image (ghost.png)"
    assert lines[2].startswith("columns used: key=image, patient_id=patient_id, age=age")
    assert re.fullmatch(r"unknown values: age \d+, sex \d+, site \d+", lines[4])
    assert re.fullmatch(r"bundle: tiny@1\.0\+[0-9a-f]{8} valid", lines[-4])
    assert lines[-3] == "flag: none (the bundle has no operating points)"
    assert lines[-2] == f"journal: none yet at {tmp_path / 'results.csv.journal'}; every image will be screened"


def test_check_fails_where_the_night_would_fail_on_its_operating_point_or_journal(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    """--check must not pass a night that then stops: an upgrade that renamed the operating point
    asked for, or one that the journal's bundle-change rule refuses."""
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    upgraded = tmp_path / "engines" / "tiny2"
    build_bundle(upgraded, version="2.0")
    for extra in (("--operating-point", "sens95"), ("--on-bundle-change", "fail"), ()):
        check = run(images, meta, out, upgraded, "--resume", "--check", *extra)
        night = run(images, meta, tmp_path / "copy.csv", upgraded, "--resume", *extra) if extra else None
        if extra == ("--operating-point", "sens95"):
            refusal = "operating point 'sens95': this bundle has no operating points"
            assert check.exit_code == 2 and refusal in check.stderr, check.output
            assert night.exit_code == 2 and refusal in night.stderr
        elif extra:
            assert check.exit_code == 2 and "holds results of bundle tiny@1.0+" in check.stderr, check.output
        else:
            assert check.exit_code == 0, check.output
            assert re.search(r"journal: .* holds results of bundle tiny@1\.0\+\w+, this run uses tiny@2\.0\+\w+: "
                             r"every image will be screened again", check.stdout)
    assert run(images, meta, out, tiny_bundle, "--check").exit_code == 2  # a journal without --resume
    journal = journal_path(out)
    kept = journal.read_bytes()
    journal.write_text("this is not a journal\n")  # e.g. another tool's file, or an older format
    foreign = run(images, meta, out, tiny_bundle, "--check", "--resume")
    assert foreign.exit_code == 2 and "is not a screening journal" in foreign.stderr
    assert run(images, meta, out, tiny_bundle, "--resume").exit_code == 2  # as the night itself
    journal.write_bytes(kept)
    same = run(images, meta, out, tiny_bundle, "--check", "--resume")
    assert same.exit_code == 0 and "holds results of this bundle; only new or changed images" in same.stdout


def test_check_with_a_broken_bundle_reports_it_and_exits_3(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "classifier.onnx").write_bytes(b"tampered")
    result = run(images, meta, tmp_path / "results.csv", broken, "--check")
    assert result.exit_code == 3
    assert "bundle: NOT usable: " in result.stdout and "does not match its manifest sha256" in result.stdout
    assert not (tmp_path / "results.csv").exists()


# -- --column --------------------------------------------------------------------------------------

def test_column_maps_a_clinics_own_headers(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(3)
    text = meta.read_text().splitlines()
    text[0] = text[0].replace("image", "Bild").replace("age", "Alter").replace("sex", "Geschlecht")
    meta.write_text("\n".join(text) + "\n")
    out = tmp_path / "results.csv"
    result = run(images, meta, out, tiny_bundle, "--column", "image=Bild", "--column", "age=Alter",
                 "--column", "sex=Geschlecht")
    assert result.exit_code == 0, result.output
    assert all(row["patient_id"] and "unknown" not in row["warnings"] for row in read_csv(out))


@pytest.mark.parametrize("column, message", [
    ("height=Groesse", "--column height=...: no such field; choose one of image, patient_id, age, sex, site"),
    ("age=Alter", "--column age=Alter: metadata CSV"),
    ("age", "--column 'age': write FIELD=HEADER, e.g. --column age=Alter"),
])
def test_bad_column_options_are_exit_2(tmp_path: Path, make_folder, tiny_bundle: Path, column, message) -> None:
    images, meta = make_folder(2)
    result = run(images, meta, tmp_path / "results.csv", tiny_bundle, "--column", column)
    assert result.exit_code == 2 and message in result.stderr, result.output


# -- --config --------------------------------------------------------------------------------------

def test_config_file_has_the_options_keys_and_the_command_line_wins(tmp_path: Path, make_folder,
                                                                    tiny_bundle: Path) -> None:
    images, meta = make_folder(3)
    config = tmp_path / "nightly.toml"
    config.write_text(f'images_dir = "{images}"\nmeta = "{meta}"\nout = "{tmp_path / "from_config.csv"}"\n'
                      f'bundle = "{tiny_bundle}"\nbackend = "onnxruntime"\nbatch-size = 3\nresume = true\n'
                      f'on-bundle-change = "fail"\ncolumn = {{ age = "age" }}\nquiet = true\n')
    result = screen("folder", "--config", config)
    assert result.exit_code == 0, result.output
    assert len(read_csv(tmp_path / "from_config.csv")) == 3 and result.stdout == ""
    result = screen("folder", "--config", config, "--out", tmp_path / "from_cli.csv")
    assert result.exit_code == 0 and (tmp_path / "from_cli.csv").exists()


@pytest.mark.parametrize("text, message", [
    ('colour = "red"\n', "unknown key 'colour'"),
    ('meta = \n', "is not valid TOML"),
    ('columns = ' + '[' * 50_000 + ']' * 50_000 + '\n', "is not valid TOML: nested too deep"),
    ('batch-size = "many"\n', "'many' is not a valid integer"),
])
def test_bad_config_files_are_exit_2(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "nightly.toml"
    config.write_text(f'images_dir = "{tmp_path}"\nmeta = "{tmp_path / "p.csv"}"\n' + text)
    result = screen("folder", "--config", config)
    assert result.exit_code == 2 and message in result.output, result.output


# -- --log-file, summary and run history ------------------------------------------------------------

def test_log_file_summary_audit_fields_and_history(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(4)
    out, log = tmp_path / "results.csv", tmp_path / "screen.log"
    assert run(images, meta, out, tiny_bundle, "--log-file", log, "--quiet").exit_code == 0
    assert run(images, meta, out, tiny_bundle, "--log-file", log, "--resume").exit_code == 0
    lines = log.read_text().splitlines()
    assert all(re.match(STAMP + " ", line) for line in lines)
    assert sum("folder started (pid " in line for line in lines) == 2  # the command of each night
    assert any(re.match(STAMP + r" Screened 4 images \(ok 4, error 0\)", line) for line in lines)
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert re.fullmatch(STAMP, summary["started_at"]) and summary["finished_at"] >= summary["started_at"]
    assert summary["host"] and summary["tool_version"] and len(summary["bundle_sha256"]) == 64
    assert summary["bundle"].endswith("+" + summary["bundle_sha256"][:8])
    assert summary["inputs"]["images_dir"] == str(images.resolve()) and summary["inputs"]["output"] == str(out.resolve())
    assert (summary["screened"], summary["reused"], summary["new_rows"]) == (0, 4, 0)
    history = sorted((tmp_path / "results.history").iterdir())
    assert 1 <= len(history) <= 2 and all(p.name.endswith("Z.summary.json") for p in history)
    rows = read_csv(out)
    assert all(re.fullmatch(STAMP, row["screened_at"]) and row["new"] == "no" for row in rows)


def test_an_error_goes_to_the_log_file_too(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    log = tmp_path / "screen.log"
    result = run(images, tmp_path / "missing.csv", tmp_path / "results.csv", tiny_bundle, "--log-file", log)
    assert result.exit_code == 2
    assert re.search(STAMP + r" Error: metadata file not found: ", log.read_text())


def test_an_empty_or_unmounted_images_folder_fails_and_keeps_last_nights_results(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(3)
    out, log = tmp_path / "results.csv", tmp_path / "screen.log"
    assert run(images, meta, out, tiny_bundle, "--quiet").exit_code == 0
    last_night = out.read_bytes(), journal_path(out).read_bytes()
    for image in images.iterdir():  # the share is not mounted: an empty mount point
        image.unlink()
    result = run(images, meta, out, tiny_bundle, "--resume", "--quiet", "--log-file", log)
    assert result.exit_code == 2
    assert f"no image files in {images} " in result.output and "is the share mounted?" in result.output
    assert (out.read_bytes(), journal_path(out).read_bytes()) == last_night
    assert re.search(STAMP + r" Error: no image files in ", log.read_text())
    assert run(images, meta, out, tiny_bundle, "--check").exit_code == 2  # --check says so too
    (images / "IMG_0001.HEIC").write_bytes(b"not screenable here")  # what was there instead
    result = run(images, meta, out, tiny_bundle, "--resume", "--quiet")
    assert result.exit_code == 2 and "found only 1 other file (IMG_0001.HEIC)" in result.output
    (images / "IMG_0001.HEIC").unlink()
    # A clinic whose empty nights are normal says so: an empty results CSV (header only).
    assert run(images, meta, out, tiny_bundle, "--resume", "--quiet", "--allow-empty").exit_code == 0
    assert read_csv(out) == [] and out.read_text(encoding="utf-8-sig").startswith("rank,image,")


@pytest.mark.parametrize("stop, logged", [
    (lambda: (_ for _ in ()).throw(click.exceptions.Exit(130)),
     "Stopped with exit code 130: interrupted; finished images are kept in the journal, rerun with --resume"),
    (lambda: 1 / 0, "Error: internal failure (ZeroDivisionError: division by zero)"),
])
def test_an_interrupt_or_a_crash_is_in_the_log_file_too(tmp_path: Path, stop, logged: str) -> None:
    """The alert says "see the log": the log must say why the night stopped, whatever stopped it."""
    from screening.cli.job import job_options

    @click.command()
    @job_options
    def night(job) -> None:
        stop()

    log = tmp_path / "screen.log"
    result = CliRunner().invoke(night, ["--log-file", str(log)])
    assert result.exit_code != 0
    assert re.search(STAMP + " " + re.escape(logged), log.read_text())


# -- upgrades under --resume ------------------------------------------------------------------------

def test_resume_with_a_new_bundle_rescreens_everything_with_a_warning(tmp_path: Path, make_folder,
                                                                       tiny_bundle: Path) -> None:
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    upgraded = tmp_path / "engines" / "tiny2"
    build_bundle(upgraded, version="2.0")
    strict = run(images, meta, out, upgraded, "--resume", "--on-bundle-change", "fail")
    assert strict.exit_code == 2 and "holds results of bundle tiny@1.0+" in strict.stderr
    result = run(images, meta, out, upgraded, "--resume")
    assert result.exit_code == 0, result.output
    assert "screening every image again with the new bundle" in result.stderr
    rows = read_csv(out)
    assert {row["bundle"].split("+")[0] for row in rows} == {"tiny@2.0"} and all(r["new"] == "yes" for r in rows)
    assert json.loads(journal_path(out).read_text().splitlines()[0])["bundle"].startswith("tiny@2.0+")


def test_a_new_bundle_that_fails_on_every_image_stops_the_night_and_keeps_the_last_results(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    """A bundle that loads and verifies yet gives NaN on every image must raise the alarm, not
    replace last night's worklist with error rows and exit 0."""
    import numpy as np
    from onnx import numpy_helper

    images, meta = make_folder(4)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    last_night = {path: path.read_bytes() for path in (out, tmp_path / "results.summary.json")}

    broken_segmenter = segmenter_model()
    broken_segmenter.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array([np.nan], np.float32), "b"))
    broken = tmp_path / "engines" / "broken"
    build_bundle(broken, version="2.0", segmenter=broken_segmenter)
    assert screen("bundle", "verify", broken).exit_code == 0  # nothing to see before screening
    for night in range(2):  # and not on the night after either, when each image fails again the same way
        result = run(images, meta, out, broken, "--resume")
        assert result.exit_code == 3, result.output
        assert "every one of the 4 images screened failed in the models" in result.stderr
        assert {path: path.read_bytes() for path in last_night} == last_night

    # The bundle mended, --resume screens the failed images again.
    result = run(images, meta, out, tiny_bundle, "--resume")
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert len(rows) == 4 and {row["status"] for row in rows} == {"ok"}


def test_the_broken_night_guard_counts_only_fresh_failures_of_images_that_reached_the_models() -> None:
    from screening.pipeline import NOT_A_NUMBER
    from screening.results import Outcome
    from screening.session import _RunResult, refuse_a_broken_night

    def night(outcomes: list[Outcome], repeats: tuple[str, ...] = ()) -> _RunResult:
        return _RunResult({o.image: o for o in outcomes}, screened=len(outcomes), reused=0,
                          screened_now=frozenset(o.image for o in outcomes), repeats=frozenset(repeats))

    nan = [Outcome(f"img_{i}.png", "f", "error", error=NOT_A_NUMBER, retry=True) for i in range(50)]
    too_big = Outcome("scan.tif", "f", "error", error="decoding needs 900 MiB, above the 256 MiB limit", retry=True)
    ok = Outcome("fine.png", "f", "ok", probabilities=(0.5, 0.5), risk=0.5)
    with pytest.raises(Exception, match="every one of the 50 images screened failed in the models"):
        refuse_a_broken_night(night([*nan, too_big]), Path("results.csv"))  # a decode error does not hide it
    refuse_a_broken_night(night([*nan, ok]), Path("results.csv"))  # the models work for some images
    refuse_a_broken_night(night([too_big]), Path("results.csv"))  # nothing reached the models
    # A quiet night: the one lesion whose output always overflows, failing again as last night showed.
    refuse_a_broken_night(night(nan[:1], repeats=("img_0.png",)), Path("results.csv"))


# -- the terminal progress bar ----------------------------------------------------------------------

@pytest.mark.parametrize("columns", [20, 40, 60, 200])
def test_progress_bar_fits_the_terminal(columns: int) -> None:
    stream = io.StringIO()
    progress = Progress(10_000, stream=stream, tty=True, width=lambda: columns)
    progress.update(1234)
    assert len(progress.line(progress.started + 7)) < columns
    assert "1234/10000" in progress.line(progress.started + 7) or columns < 40
