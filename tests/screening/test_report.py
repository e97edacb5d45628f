"""The HTML review report: `screen folder --report` and `screen report`, read back as a user would."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bundle_factory import blue_picture, write_image
from folder_runner import screen
from report_factory import (HOSTILE_IDS, header_fact, page_data, report_of_csv, screen_with_report,
                            screened_folder)
from screening.errors import InputError
from screening.journal import journal_path
from screening.report import views as views_module
from screening.report.render import ReportHeader, render_report
from screening.report.rows import read_results_csv
from screening.report.views import VIEWS_FILE, View, ViewWriter, outline_path, read_views
from screening.results import neutralise, original_text


pytestmark = pytest.mark.usefixtures("no_default_bundle")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = screened_folder(tmp_path_factory.mktemp("report"))
    result = screen_with_report(paths)
    assert result.exit_code == 0, result.output
    return paths


def test_report_lists_every_screened_image_in_rank_order_with_its_pictures(run):
    data = page_data(run["report"])
    ranks = [row["r"] for row in data["rows"]]
    assert ranks == list(range(1, 13))  # 12 images decoded; the broken one is an error
    risks = [row["k"] for row in data["rows"]]
    assert risks == sorted(risks, reverse=True)
    folder = run["report"].with_name("report_files")
    for row in data["rows"]:
        assert (run["report"].parent / row["t"]).is_file()  # the thumbnail link resolves
        assert row["o"].startswith("M")  # a lesion outline
        assert [len(m[2]) for m in row["h"]] == [16, 16]  # two 4 x 4 attention maps
    assert len(read_views(folder)) == 12


def test_report_shows_readable_classes_flags_and_metadata_as_read(run):
    data = page_data(run["report"])
    labels = {c[0] for row in data["rows"] for c in row["c"]}
    assert labels <= {"melanocytic nevus", "benign keratosis-like lesion", "melanoma", "basal cell carcinoma"}
    assert {row["f"] for row in data["rows"]} <= {"refer", "routine"} and data["hasFlag"]
    assert all(row["f"] == ("refer" if row["k"] >= 0.5 else "routine") for row in data["rows"])
    assert any(re.fullmatch(r"\d+-\d+ · (female|male) · \w+", row["m"]) for row in data["rows"])
    assert any(row["m"] == "unknown · unknown · unknown" for row in data["rows"])  # no metadata row


def test_errors_section_gives_each_error_row_with_its_reason(run):
    html = run["report"].read_text(encoding="utf-8")
    errors = html[html.index('<section id="errors"'):]
    assert "broken.jpg" in errors and "Errors (1)" in errors
    assert re.search(r"<td>broken\.jpg</td><td></td><td>[^<]*(corrupt|truncated|decode|not a)[^<]*</td>", errors)


def test_patient_text_is_data_never_markup(run):
    html = run["report"].read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in html and "<b>Sons</b>" not in html
    ids = {row["p"] for row in page_data(run["report"])["rows"]}
    assert set(HOSTILE_IDS.values()) <= ids  # shown as typed, un-neutralised, to the page's script


def test_report_is_self_contained_and_refuses_other_scripts(run):
    html = run["report"].read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from a network
    policy = re.search(r'Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy.split("script-src")[1]


def test_thumbnails_come_from_the_pixels_already_decoded(tmp_path, monkeypatch):
    """--report decodes no image twice: the report's own decoder is never called."""
    monkeypatch.setattr(views_module, "decode_image", lambda *a, **k: pytest.fail("second decode"))
    paths = screened_folder(tmp_path, n=5)
    result = screen_with_report(paths)
    assert result.exit_code == 0, result.output
    assert len(read_views(paths["report"].with_name("report_files"))) == 5


def test_screen_report_rebuilds_from_the_csv_reusing_the_pictures(run, tmp_path):
    out = run["report"]
    before = page_data(out)
    result = screen("report", run["out"], "--images", run["images"], "--out", out, "--bundle", run["bundle"],
                    "--meta", run["meta"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Report: {out} (13 rows, 0 thumbnails made)"
    assert page_data(out)["rows"] == before["rows"]


def test_report_of_a_killed_run_lists_the_missing_images(tmp_path):
    paths = screened_folder(tmp_path, n=6)
    assert screen_with_report(paths).exit_code == 0
    journal = journal_path(paths["out"])
    lines = journal.read_text(encoding="utf-8").splitlines(keepends=True)
    journal.write_text("".join(lines[:4]) + lines[4][:10], encoding="utf-8")  # 3 results, a torn 4th
    paths["out"].unlink()
    result = screen("report", paths["out"], "--images", paths["images"], "--out", tmp_path / "partial.html",
                    "--bundle", paths["bundle"], "--meta", paths["meta"])
    assert result.exit_code == 0, result.output
    assert "4 images of the folder have no result" in result.output
    html = (tmp_path / "partial.html").read_text(encoding="utf-8")
    assert "4 images of the folder have no result in this run" in html
    assert "built from the journal (the run did not finish)" in html


@pytest.mark.parametrize("name, message", [
    ("report.txt", "must be an .html file"),
    ("missing/report.html", "does not exist"),
    ("images/report.html", "inside the images folder"),
])
def test_unusable_report_paths_are_refused_before_screening(tmp_path, name, message):
    paths = screened_folder(tmp_path, n=2)
    paths["report"] = tmp_path / name
    result = screen_with_report(paths)
    assert result.exit_code == 2 and message in result.output
    assert not paths["out"].exists()


def test_a_report_whose_pictures_would_land_in_the_images_folder_is_refused(tmp_path):
    """night.html's pictures go in night_files/: screening night_files/ would screen thumbnails."""
    paths = screened_folder(tmp_path, n=2)
    paths["images"] = paths["images"].rename(tmp_path / "night_files")
    paths["report"] = tmp_path / "night.html"
    result = screen_with_report(paths)
    assert result.exit_code == 2 and not paths["out"].exists()
    assert "the report's pictures folder" in result.output and "would be screened as images" in result.output
    (tmp_path / "elsewhere_files").symlink_to(paths["images"])  # the same folder, by another name
    paths["report"] = tmp_path / "elsewhere.html"
    result = screen_with_report(paths)
    assert result.exit_code == 2 and "the report's pictures folder" in result.output


def test_a_link_planted_at_the_views_file_is_not_followed(tmp_path):
    folder = tmp_path / "report_files"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (folder / VIEWS_FILE).symlink_to(victim)
    with pytest.raises(InputError, match="cannot write the report's pictures"):
        with ViewWriter(folder, [], 0.5):
            pass
    assert victim.read_text() == "keep me\n"


def test_a_report_name_with_url_syntax_still_links_its_thumbnails(run, tmp_path):
    """'#' starts a fragment and '%20' decodes to a space: the links must be URL-quoted."""
    out = tmp_path / "night#1 %20.html"
    result = screen("report", run["out"], "--images", run["images"], "--out", out, "--bundle", run["bundle"])
    assert result.exit_code == 0, result.output
    rows = page_data(out)["rows"]
    assert rows and all(row["t"].startswith("night%231%20%2520_files/thumbs/") for row in rows)
    assert all((tmp_path / unquote(row["t"])).is_file() for row in rows)  # what the browser opens


def test_a_non_finite_number_in_the_results_csv_is_an_error_row_not_a_blank_page(tmp_path):
    out = report_of_csv(tmp_path, "rank,image,patient_id,risk,flag,status,error,p_mel,p_nv\n"
                                  "1,inf.jpg,P1,1e999,refer,ok,,0.9,0.1\n"
                                  "2,fine.jpg,P2,0.300000,routine,ok,,0.3,0.7\n"
                                  "3,nan.jpg,P3,0.200000,routine,ok,,nan,0.8\n")
    assert [row["i"] for row in page_data(out)["rows"]] == ["fine.jpg"]  # the data block parses
    html = out.read_text(encoding="utf-8")
    assert "<td>inf.jpg</td><td>P1</td><td>non-finite risk in the results CSV</td>" in html
    assert "<td>nan.jpg</td><td>P3</td><td>non-finite p_mel in the results CSV</td>" in html
    assert header_fact(out, "Screened") == "1" and header_fact(out, "Errors") == "2"


def test_outline_of_a_full_mask_is_the_frame_and_of_an_empty_mask_nothing():
    assert outline_path(np.ones((8, 8), np.float32), 0.5) == "M62 62L62 938L938 938L938 62Z"  # pixel centres
    assert outline_path(np.zeros((8, 8), np.float32), 0.5) == ""


def test_torn_or_foreign_view_lines_are_skipped(tmp_path):
    good = View("a.jpg", "", (0, 0), "M0 0Z")
    maps = [{"query": "meta", "label": "x", "grid": [1, 1], "values": [255], "peak": float("nan")}]
    not_json = json.dumps({"image": "b.jpg", "thumb": "", "size": [0, 0], "attention": maps})  # NaN
    (tmp_path / VIEWS_FILE).write_text(good.to_json() + "\n[1,2]\n{\"image\": 3}\n" + not_json + "\n"
                                       + good.to_json()[:15])
    assert read_views(tmp_path) == {"a.jpg": good}


@given(st.text())
def test_the_text_a_clinic_typed_survives_the_csv(text):
    if not text.startswith("'"):  # a leading apostrophe before a formula sign is ambiguous in the CSV
        assert original_text(neutralise(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_a_results_csv_give_rows_or_one_input_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "results.csv"
    path.write_bytes(b"rank,image,patient_id,risk,status\n" + data)
    try:
        results = read_results_csv(path)
    except InputError:
        return
    assert all(isinstance(row.image, str) for row in results.rows)


CELLS = st.one_of(st.text(max_size=6), st.sampled_from(["²", "٣", "1", "01", "nan", "-inf", "1e999", "0.5", ""]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(CELLS, CELLS, CELLS), max_size=4))
@example([("²", "0.5", "0.5")])  # "²".isdigit() is True but int("²") raises
@example([("1", "nan", "0.5"), ("2", "0.4", "inf")])
def test_any_cells_of_a_results_csv_give_a_page_whose_data_parses(tmp_path_factory, cells):
    path = tmp_path_factory.mktemp("cells") / "results.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "image", "risk", "status", "p_mel"])
        writer.writerows([rank, f"{i}.jpg", risk, "ok", p] for i, (rank, risk, p) in enumerate(cells))
    try:
        results = read_results_csv(path)
    except InputError:
        return
    assert all(row.rank is None or isinstance(row.rank, int) for row in results.rows)
    out = path.with_name("report.html")
    out.write_text(render_report(results, {}, ReportHeader("", "", "", "", ""), {}, out), encoding="utf-8")
    data = page_data(out)  # as strict as the browser's JSON.parse
    assert len(data["rows"]) + sum(r.status != "ok" for r in results.rows) == len(cells)


def test_new_marker_and_flag_only_when_they_tell_something(tmp_path):
    header = "rank,image,patient_id,risk,flag,status,screened_at,new\n"
    resumed = tmp_path / "resumed.csv"
    resumed.write_text(header + "1,a.jpg,P1,0.9,refer,ok,2026-11-29T02:00:00+00:00,yes\n"
                                "2,b.jpg,P2,0.1,routine,ok,2026-11-28T02:00:00+00:00,no\n", encoding="utf-8")
    results = read_results_csv(resumed)
    assert results.has_new and results.has_flag and [r.new for r in results.rows] == [True, False]
    fresh = tmp_path / "fresh.csv"
    fresh.write_text(header + "1,a.jpg,P1,0.9,,ok,2026-11-29T02:00:00+00:00,yes\n", encoding="utf-8")
    results = read_results_csv(fresh)
    assert not results.has_new and not results.has_flag  # every row new, no operating point


def test_a_file_name_that_is_not_utf8_gets_its_row_and_pictures_in_the_report(tmp_path):
    """A camera that names files in Latin-1 must not crash the nightly --report run."""
    paths = screened_folder(tmp_path, n=3)
    latin1 = os.fsencode(paths["images"]) + b"/caf\xe9.png"
    Path(os.fsdecode(latin1)).write_bytes(paths["images"].joinpath("img_001.png").read_bytes())
    result = screen_with_report(paths)
    assert result.exit_code == 0, result.output
    rows = {row["i"]: row for row in page_data(paths["report"])["rows"]}
    assert "caf\\xe9.png" in rows and (paths["report"].parent / rows["caf\\xe9.png"]["t"]).is_file()
    assert "of the folder have no result" not in paths["report"].read_text(encoding="utf-8")
    # Rebuilt by `screen report` without the pictures: the thumbnail is made from the file itself.
    shutil.rmtree(paths["report"].with_name("report_files"))
    result = screen("report", paths["out"], "--images", paths["images"], "--out", paths["report"],
                    "--bundle", paths["bundle"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Report: {paths['report']} (5 rows, 4 thumbnails made)"
    assert page_data(paths["report"])["rows"][0]["t"]


def test_pictures_of_a_file_since_replaced_are_not_shown_beside_its_new_result(tmp_path):
    """A new file at an old path, screened by a run without --report, gets its own thumbnail."""
    paths = screened_folder(tmp_path, n=3)
    assert screen_with_report(paths).exit_code == 0
    target = paths["images"] / "img_001.png"
    write_image(target, blue_picture())  # blue, not the lesion
    args = ["folder", paths["images"], "--meta", paths["meta"], "--out", paths["out"], "--bundle",
            paths["bundle"], "--backend", "onnxruntime", "--quiet", "--resume"]  # the nightly job, default workers
    assert screen(*args).exit_code == 0
    result = screen("report", paths["out"], "--images", paths["images"], "--out", paths["report"],
                    "--bundle", paths["bundle"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Report: {paths['report']} (4 rows, 1 thumbnails made)"
    row = next(r for r in page_data(paths["report"])["rows"] if r["i"] == "img_001.png")
    thumb = cv2.imread(str(paths["report"].parent / row["t"]))
    assert thumb[..., 0].mean() > 150 > thumb[..., 2].mean()  # blue (BGR), the new file's pixels
    assert "o" not in row or not row["o"]  # no outline of the old lesion


def test_a_row_cut_short_or_a_number_a_spreadsheet_retyped_is_an_error_row_saying_so(tmp_path):
    """A CSV copied while written ends mid-row; a spreadsheet turned a risk into '0,93' or '93%'.
    Such a row was shown as an error without a reason (cut short) or as a result without a risk
    (retyped): each is an error row that says why, and the other rows are shown as they are."""
    out = report_of_csv(tmp_path, "rank,image,patient_id,risk,flag,status,error,p_mel,p_nv\n"
                                  "1,comma.jpg,P1,\"0,930000\",refer,ok,,0.93,0.07\n"
                                  "2,percent.jpg,P2,93%,refer,ok,,0.93,0.07\n"
                                  "3,big.jpg,P3,0.900000,refer,ok,,55,0.1\n"
                                  "4,fine.jpg,P4,0.300000,routine,ok,,0.3,0.7\n"
                                  "5,cut.jpg,P5,0.20")
    assert [row["i"] for row in page_data(out)["rows"]] == ["fine.jpg"]
    html = out.read_text(encoding="utf-8")
    assert "<td>comma.jpg</td><td>P1</td><td>risk &#39;0,930000&#39; in the results CSV is not a number</td>" in html
    assert "<td>percent.jpg</td><td>P2</td><td>risk &#39;93%&#39; in the results CSV is not a number</td>" in html
    assert "<td>big.jpg</td><td>P3</td><td>p_mel &#39;55&#39; in the results CSV is not a probability</td>" in html
    assert "<td>cut.jpg</td><td>P5</td><td>its row in the results CSV is cut short" in html
    assert header_fact(out, "Screened") == "1" and header_fact(out, "Errors") == "4"
