"""`screen report` days after the run: what changed since (files, patients CSV, a lost summary)
must not be shown as what was screened, and the operating point must be the one behind the flags."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bundle_factory import write_image
from folder_runner import screen
from report_factory import POINT, header_fact, page_data, report_of_csv, screen_with_report, screened_folder
from screening.journal import journal_path
from screening.report.build import NOT_IN_JOURNAL
from screening.report.operating_point import risk_text
from screening.results import summary_path


pytestmark = pytest.mark.usefixtures("no_default_bundle")


@pytest.fixture
def run(tmp_path: Path) -> dict[str, Path]:
    paths = screened_folder(tmp_path, n=4)
    result = screen_with_report(paths)
    assert result.exit_code == 0, result.output
    return paths


def screen_report(paths: dict[str, Path], results: Path, *extra: str) -> Path:
    out = results.parent / "later.html"
    result = screen("report", results, "--images", paths["images"], "--out", out, "--bundle", paths["bundle"], *extra)
    assert result.exit_code == 0, result.output
    return out


def test_without_its_summary_the_report_names_the_bundle_point_its_flags_agree_with(run):
    summary_path(run["out"]).unlink()
    out = screen_report(run, run["out"])
    point = header_fact(out, "Operating point")
    assert point.startswith("sens95 (malignant sensitivity 0.95, refer at risk >= 0.500000)")
    assert "summary is missing" in point and "has no operating points" not in point


def test_without_its_summary_flags_that_fit_no_point_make_it_unknown(run):
    summary_path(run["out"]).unlink()
    rows = run["out"].read_text(encoding="utf-8").replace(",refer,", ",routine,")  # another threshold
    run["out"].write_text(rows, encoding="utf-8")
    point = header_fact(screen_report(run, run["out"]), "Operating point")
    assert point.startswith("unknown: the run's summary is missing") and "sens95" not in point


def test_a_journal_is_flagged_with_the_bundle_point(run):
    run["out"].unlink()  # a killed run leaves only its journal
    out = screen_report(run, journal_path(run["out"]))
    rows = page_data(out)["rows"]
    assert rows and all(row["f"] == ("refer" if row["k"] >= POINT["threshold"] else "routine") for row in rows)
    assert header_fact(out, "Flagged (refer)") == str(sum(row["f"] == "refer" for row in rows))
    assert "sens95" in header_fact(out, "Operating point")


def test_a_risk_that_would_print_like_the_threshold_gets_more_decimals(tmp_path):
    point = {**POINT, "threshold": 0.22019734}
    summary_path(tmp_path / "results.csv").write_text(json.dumps({"operating_point": point}), encoding="utf-8")
    out = report_of_csv(tmp_path, "rank,image,patient_id,risk,flag,status\n"
                                  "1,a.jpg,P1,0.220200,refer,ok\n2,b.jpg,P2,0.220000,routine,ok\n"
                                  "3,c.jpg,P3,0.100000,routine,ok\n")
    assert "refer at risk >= 0.220197" in header_fact(out, "Operating point")
    shown = [row.get("kt") for row in page_data(out)["rows"]]
    assert shown == ["0.220200", "0.2200", None]  # None: the page's usual 3 decimals, "0.100"
    assert risk_text(0.5, None) is None and risk_text(0.221, 0.220197) is None


def test_a_file_replaced_since_screening_shows_no_picture_but_says_why(run):
    shutil.rmtree(run["report"].with_name("report_files"))  # as if screened without --report
    write_image(run["images"] / "img_001.png", np.full((96, 96, 3), (20, 40, 230), np.uint8))  # not screened
    out = screen_report(run, run["out"])
    rows = {row["i"]: row for row in page_data(out)["rows"]}
    assert "t" not in rows["img_001.png"] and rows["img_001.png"]["x"] == "file changed since it was screened"
    assert all("t" in row for image, row in rows.items() if image != "img_001.png")


def test_metadata_changed_since_screening_is_said_not_shown_as_read(run):
    with open(run["meta"], encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["age"] = "85"  # another age bin than the model was given for this image
    with open(run["meta"], "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = screen_report(run, run["out"], "--meta", str(run["meta"]))
    meta = {row["i"]: row["m"] for row in page_data(out)["rows"]}
    assert meta.pop(rows[0]["image"]) == "metadata changed since screening"
    assert all(" · " in text for text in meta.values())  # the others, unchanged, as the model read them


def test_a_damaged_journal_line_is_left_out_never_shown_as_a_result(run):
    """A killed run's journal edited by hand (or damaged): a risk of 1.7 is no result to rank."""
    run["out"].unlink()
    journal = journal_path(run["out"])
    header, *lines = journal.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if json.loads(line)["status"] == "ok")
    damaged = {**json.loads(lines[at]), "risk": 1.7}
    lines_now = [*lines[:at], json.dumps(damaged), *lines[at + 1:]]
    journal.write_text("\n".join([header, *lines_now]) + "\n", encoding="utf-8")
    others = {json.loads(line)["image"] for line in lines if json.loads(line)["status"] == "ok"} - {damaged["image"]}
    shown = {row["i"]: row for row in page_data(screen_report(run, journal))["rows"]}
    assert damaged["image"] not in shown and others and others <= set(shown)
    assert all(row["k"] <= 1 for row in shown.values() if row.get("k") is not None)


def test_a_journal_risk_changed_by_hand_is_shown_as_damaged_not_as_a_lower_risk(run):
    """A risk still between 0 and 1 but no longer the sum of the malignant probabilities (a digit
    changed on disk or by hand) would move a lesion down the worklist unnoticed: the journal's
    header records the malignant classes, so the report can tell and says so."""
    run["out"].unlink()
    journal = journal_path(run["out"])
    header, *lines = journal.read_text(encoding="utf-8").splitlines()
    assert json.loads(header)["malignant"]  # recorded by the run
    at = next(i for i, line in enumerate(lines) if json.loads(line)["status"] == "ok")
    changed = json.loads(lines[at])
    changed["risk"] = round(changed["risk"] / 4, 6)
    journal.write_text("\n".join([header, *lines[:at], json.dumps(changed), *lines[at + 1:]]) + "\n", encoding="utf-8")
    data = page_data(screen_report(run, journal))
    assert changed["image"] not in {row["i"] for row in data["rows"]}
    errors = {row["i"]: row["e"] for row in data["errors"]}
    assert "is not the sum of the malignant probabilities" in errors[changed["image"]]


def test_a_journal_of_a_version_that_did_not_record_the_malignant_classes_still_reads(run):
    run["out"].unlink()
    journal = journal_path(run["out"])
    header, *lines = journal.read_text(encoding="utf-8").splitlines()
    older = {k: v for k, v in json.loads(header).items() if k != "malignant"}
    journal.write_text("\n".join([json.dumps(older), *lines]) + "\n", encoding="utf-8")
    shown = {row["i"] for row in page_data(screen_report(run, journal))["rows"]}
    assert shown == {json.loads(line)["image"] for line in lines if json.loads(line)["status"] == "ok"}


def test_a_journal_line_changed_into_other_valid_json_is_shown_as_damaged_naming_its_line(run):
    """A lesion area and a warning changed on disk (a network share flipping bytes, an editor
    saving a half-edited file): the line is still JSON and its numbers still agree, but it is not
    what screening wrote. Its checksum no longer matches: the report shows the line as damaged."""
    run["out"].unlink()
    journal = journal_path(run["out"])
    header, *lines = journal.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if json.loads(line)["status"] == "ok")
    changed = json.loads(lines[at])
    changed["lesion_area"] = round(1 - changed["lesion_area"], 6)
    changed["warnings"] = [*changed["warnings"], "checked by hand"]
    journal.write_text("\n".join([header, *lines[:at], json.dumps(changed), *lines[at + 1:]]) + "\n", encoding="utf-8")
    data = page_data(screen_report(run, journal))
    assert changed["image"] not in {row["i"] for row in data["rows"]}
    errors = {row["i"]: row["e"] for row in data["errors"]}
    assert errors[changed["image"]] == (f"its latest journal line ({at + 2}) is damaged (checksum "
                                        f"{changed['checksum']!r} does not match the line (changed since it was "
                                        f"written)): no result shown, not even its earlier one")


def test_a_journal_line_whose_checksum_was_cut_off_is_shown_as_damaged(run):
    run["out"].unlink()
    journal = journal_path(run["out"])
    header, *lines = journal.read_text(encoding="utf-8").splitlines()
    assert json.loads(header)["line_checksum"]  # the run promised a checksum on every line
    stripped = {k: v for k, v in json.loads(lines[0]).items() if k != "checksum"}
    journal.write_text("\n".join([header, json.dumps(stripped), *lines[1:]]) + "\n", encoding="utf-8")
    data = page_data(screen_report(run, journal))
    assert stripped["image"] not in {row["i"] for row in data["rows"]}
    assert "no checksum" in {row["i"]: row["e"] for row in data["errors"]}[stripped["image"]]


def test_a_journal_of_a_version_without_line_checksums_still_reads(run):
    run["out"].unlink()
    journal = journal_path(run["out"])
    header, *lines = journal.read_text(encoding="utf-8").splitlines()
    older = {k: v for k, v in json.loads(header).items() if k != "line_checksum"}
    unsummed = [json.dumps({k: v for k, v in json.loads(line).items() if k != "checksum"}) for line in lines]
    journal.write_text("\n".join([json.dumps(older), *unsummed]) + "\n", encoding="utf-8")
    data = page_data(screen_report(run, journal))
    status = {json.loads(line)["image"]: json.loads(line)["status"] for line in lines}
    assert {row["i"] for row in data["rows"]} == {image for image, s in status.items() if s == "ok"}
    assert {row["i"] for row in data["errors"]} == {image for image, s in status.items() if s == "error"}


def _rescreened_then_damaged(journal: Path) -> tuple[str, int]:
    """A --resume that screened a replaced picture again and was killed: the image's new line is
    appended after its old one, then damaged (a risk of 1.7). Returns the image and its line number."""
    lines = journal.read_text(encoding="utf-8").splitlines()
    older = json.loads(next(line for line in lines[1:] if json.loads(line)["status"] == "ok"))
    newer = {**older, "fingerprint": "the new picture", "risk": 1.7}
    journal.write_text("\n".join([*lines, json.dumps(newer)]) + "\n", encoding="utf-8")
    return older["image"], len(lines) + 1


def notes(report: Path) -> list[str]:
    page = report.read_text(encoding="utf-8")
    return [html.unescape(note) for note in re.findall(r'<p class="warning" role="alert">(.*?)</p>', page, re.S)]


def test_an_images_damaged_later_line_is_shown_as_damaged_never_as_its_older_result(run):
    """A journal alone: the image's latest line (of the file as it is now) is damaged. Its earlier
    line is the result of the file before it was replaced: shown, it would present an old result
    as tonight's. The image is an error row naming the line, and the header says so."""
    run["out"].unlink()
    journal = journal_path(run["out"])
    image, number = _rescreened_then_damaged(journal)
    out = screen_report(run, journal)
    data = page_data(out)
    assert image not in {row["i"] for row in data["rows"]}
    errors = {row["i"]: row["e"] for row in data["errors"]}
    assert errors[image] == (f"its latest journal line ({number}) is damaged (risk 1.7 is not a number between "
                             f"0 and 1): no result shown, not even its earlier one")
    assert f"{journal} line {number} ({image}) is damaged (risk 1.7 is not a number between 0 and 1): " \
           f"{image} is shown as an error, not with its earlier result" in notes(out)


def test_an_images_torn_last_line_says_the_run_stopped_not_that_the_journal_is_damaged(run):
    """A run stopped while writing an image's new line leaves it cut short at the end of the
    journal: the reviewer is told that the run stopped and what to do, not of damage to look into."""
    run["out"].unlink()
    journal = journal_path(run["out"])
    lines = journal.read_text(encoding="utf-8").splitlines()
    older = json.loads(next(line for line in lines[1:] if json.loads(line)["status"] == "ok"))
    newer = json.dumps({**older, "fingerprint": "the new picture"})
    journal.write_text("\n".join([*lines, newer[:len(newer) // 2]]), encoding="utf-8")  # no newline: cut
    image, number = older["image"], len(lines) + 1
    out = screen_report(run, journal)
    data = page_data(out)
    assert image not in {row["i"] for row in data["rows"]}
    errors = {row["i"]: row["e"] for row in data["errors"]}
    assert errors[image] == (f"its latest journal line ({number}) is torn (the run stopped while writing it; "
                             f"rerun with --resume): no result shown, not even its earlier one")
    assert f"{journal} line {number} ({image}) is torn (the run stopped while writing it; rerun with --resume): " \
           f"{image} is shown as an error, not with its earlier result" in notes(out)
    assert not any("damaged" in note for note in notes(out))


def test_damaged_journal_lines_that_name_no_image_are_warned_of(run):
    """A line too damaged to say which image it was for cannot be shown as that image's error: the
    reviewer is told, with the line, that an image may show its older result."""
    run["out"].unlink()
    journal = journal_path(run["out"])
    lines = journal.read_text(encoding="utf-8").splitlines()
    journal.write_text("\n".join([*lines, "\x00\x00\x00"]) + "\n", encoding="utf-8")
    out = screen_report(run, journal)
    assert f"{journal} line {len(lines) + 1} is damaged (not JSON (JSONDecodeError)): it names no image: an " \
           f"image whose newer result was on it may show its older result" in notes(out)


def test_a_csv_without_screening_times_shows_no_picture_of_an_older_screening(run):
    """A results CSV from before ``screened_at``: the journal's latest line of an image is all that
    says which file its row screened. When that line is damaged, the earlier line's screening (a file
    since replaced) must not lend its picture to the row: no picture, and the note says why."""
    with open(run["out"], encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(run["out"], "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[c for c in rows[0] if c != "screened_at"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    journal = journal_path(run["out"])
    image, number = _rescreened_then_damaged(journal)
    out = screen_report(run, run["out"])
    shown = {row["i"]: row for row in page_data(out)["rows"]}
    assert "t" not in shown[image] and shown[image]["x"] == NOT_IN_JOURNAL
    assert all("t" in row for name, row in shown.items() if name != image)
    assert f"{journal} line {number} ({image}) is damaged (risk 1.7 is not a number between 0 and 1): this " \
           f"report shows the CSV's result, which that line may have replaced" in notes(out)
