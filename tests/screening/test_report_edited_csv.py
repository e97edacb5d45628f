"""`screen report` of a results CSV that someone opened in a spreadsheet, sorted or retyped, and saved:
the worklist still reads top-down by risk, and a row the report cannot trust says why."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from bundle_factory import build_bundle
from report_factory import page_data, report_of_csv
from screening.results import summary_path

pytestmark = pytest.mark.usefixtures("no_default_bundle")

HEADER = "rank,image,patient_id,risk,flag,status,error,p_mel,p_nv\n"


def test_a_csv_sorted_by_image_name_still_lists_the_highest_risk_first(tmp_path: Path) -> None:
    """Sorted by image (or patient) in a spreadsheet and saved, the CSV's rows are no longer in
    rank order. The page's default view (by rank) drew them in file order: the 0.9 melanoma at
    the bottom of the worklist, under the routine ones, with nothing to say the order was wrong."""
    out = report_of_csv(tmp_path, HEADER + "2,a.jpg,P1,0.300000,routine,ok,,0.3,0.7\n"
                                           "3,b.jpg,P2,0.200000,routine,ok,,0.2,0.8\n"
                                           "1,c.jpg,P3,0.900000,refer,ok,,0.9,0.1\n")
    rows = page_data(out)["rows"]
    assert [row["i"] for row in rows] == ["c.jpg", "a.jpg", "b.jpg"]
    assert [row["r"] for row in rows] == [1, 2, 3]


@pytest.mark.parametrize("status", ["OK", "ok ", "done"])
def test_a_retyped_status_is_an_error_row_that_says_so(tmp_path: Path, status: str) -> None:
    """A status other than ok/error (retyped 'OK', a trailing space) made the row an error row
    with an empty reason: a result dropped from the worklist without a word of why."""
    out = report_of_csv(tmp_path, HEADER + f"1,c.jpg,P3,0.900000,refer,{status},,0.9,0.1\n"
                                           "2,a.jpg,P1,0.300000,routine,ok,,0.3,0.7\n")
    assert [row["i"] for row in page_data(out)["rows"]] == ["a.jpg"]
    page = html.unescape(out.read_text(encoding="utf-8"))
    assert f"<td>c.jpg</td><td>P3</td><td>status '{status}' in the results CSV is neither ok nor error" in page


def test_a_csv_saved_by_a_spreadsheet_with_semicolons_and_decimal_commas_is_read_as_such(tmp_path: Path) -> None:
    """A spreadsheet in a decimal-comma locale saves semicolons and '0,9'. `screen evaluate` reads
    such a file; `screen report` said it was 'not a results CSV (no column image, rank, risk,
    status)' of a file whose header shows exactly those columns."""
    text = "\ufeff" + (HEADER.replace(",", ";") + "1;c.jpg;P3;0,900000;refer;ok;;0,9;0,1\n"
                                                  "2;a.jpg;P1;0,300000;routine;ok;;0,3;0,7\n").replace("\n", "\r\n")
    out = report_of_csv(tmp_path, text)
    rows = page_data(out)["rows"]
    assert [(row["i"], row["k"], row["f"]) for row in rows] == [("c.jpg", 0.9, "refer"), ("a.jpg", 0.3, "routine")]
    assert [dict(row["c"][i][1:] for i in range(2)) for row in rows] == [{"mel": 0.9, "nv": 0.1},
                                                                         {"nv": 0.7, "mel": 0.3}]


def test_a_semicolon_csv_with_a_decimal_point_is_not_misread(tmp_path: Path) -> None:
    """Semicolons with decimal points (another spreadsheet's choice) keep their numbers."""
    out = report_of_csv(tmp_path, HEADER.replace(",", ";") + "1;c.jpg;P3;0.900000;refer;ok;;0.9;0.1\n")
    assert [(row["i"], row["k"]) for row in page_data(out)["rows"]] == [("c.jpg", 0.9)]


def test_an_image_listed_twice_with_two_results_is_an_error_row_not_two_worklist_rows(tmp_path: Path) -> None:
    """Two runs' CSVs pasted together list an image twice: the worklist showed it twice, once refer
    at 0.9 and once routine at 0.1, with nothing to say which is its result. `screen evaluate`
    refuses such a file; the report shows the image once, as an error naming the lines."""
    out = report_of_csv(tmp_path, HEADER + "1,c.jpg,P3,0.900000,refer,ok,,0.9,0.1\n"
                                           "2,a.jpg,P1,0.300000,routine,ok,,0.3,0.7\n"
                                           "1,c.jpg,P3,0.100000,routine,ok,,0.1,0.9\n")
    assert [row["i"] for row in page_data(out)["rows"]] == ["a.jpg"]
    page = html.unescape(out.read_text(encoding="utf-8"))
    assert ("<td>c.jpg</td><td>P3</td><td>listed 2 times in the results CSV (lines 2, 4): results of two runs "
            "pasted together? None of them is shown") in page


def test_a_retyped_risk_that_is_not_the_sum_of_the_malignant_probabilities_is_an_error_row(tmp_path: Path) -> None:
    """A risk retyped from 0.9 to 0.1 (with its flag) drew a melanoma at 0.9 as a routine 0.1 row
    near the bottom of the worklist. Screening writes the risk as the sum of the malignant classes'
    probabilities (mel and bcc here), so the report can tell, for rows of its own bundle."""
    bundle = build_bundle(tmp_path / "bundle")
    header = "rank,image,patient_id,risk,flag,status,error,p_nv,p_bkl,p_mel,p_bcc,bundle\n"
    text = header + (f"1,fine.jpg,P1,0.600000,refer,ok,,0.300000,0.100000,0.500000,0.100000,{bundle.identity}\n"
                     f"2,retyped.jpg,P2,0.100000,routine,ok,,0.050000,0.050000,0.850000,0.050000,{bundle.identity}\n"
                     f"3,other.jpg,P3,0.100000,routine,ok,,0.050000,0.050000,0.850000,0.050000,other@2.0+0123abcd\n")
    out = report_of_csv(tmp_path, text, manifest=bundle)
    assert [row["i"] for row in page_data(out)["rows"]] == ["fine.jpg", "other.jpg"]  # another bundle: its own sums
    page = html.unescape(out.read_text(encoding="utf-8"))
    assert ("<td>retyped.jpg</td><td>P2</td><td>risk '0.100000' in the results CSV is not the sum of its malignant "
            "classes' probabilities (mel, bcc: 0.900000): edited?") in page


def test_a_retyped_flag_that_disagrees_with_the_risk_at_the_runs_threshold_is_an_error_row(tmp_path: Path) -> None:
    """The run's summary says refer at risk >= 0.5. A 0.9 row retyped 'routine' was drawn as
    routine and left out of the 'flagged only' view a busy reviewer works from."""
    results = tmp_path / "results.csv"
    summary_path(results).write_text(json.dumps({"operating_point": {"name": "sens95", "threshold": 0.5,
                                                                     "target_sensitivity": 0.95}}))
    out = report_of_csv(tmp_path, HEADER + "1,retyped.jpg,P1,0.900000,routine,ok,,0.9,0.1\n"
                                           "2,fine.jpg,P2,0.500000,refer,ok,,0.5,0.5\n"
                                           "3,low.jpg,P3,0.200000,routine,ok,,0.2,0.8\n")
    assert [(row["i"], row["f"]) for row in page_data(out)["rows"]] == [("fine.jpg", "refer"), ("low.jpg", "routine")]
    page = html.unescape(out.read_text(encoding="utf-8"))
    assert ("<td>retyped.jpg</td><td>P1</td><td>flag 'routine' in the results CSV is not what risk 0.900000 gives at "
            "the run's threshold 0.500000 (refer): edited?") in page


def test_a_csv_saved_as_unicode_text_says_how_to_save_it(tmp_path: Path) -> None:
    """A spreadsheet's "Unicode text" is UTF-16 with tabs: the report said "cannot read …: 'utf-8'
    codec can't decode byte 0xff in position 0", which tells a reviewer nothing they can act on."""
    from screening.errors import InputError

    results = tmp_path / "results.csv"
    results.write_bytes((HEADER.replace(",", "\t") + "1\tc.jpg\tP3\t0.9\trefer\tok\t\t0.9\t0.1\n").encode("utf-16"))
    with pytest.raises(InputError) as raised:
        _report(tmp_path, results)
    assert "UTF-16" in str(raised.value) and "CSV UTF-8" in str(raised.value)


def _report(folder: Path, results: Path) -> Path:
    from screening.report.build import ReportRequest, build_report

    out = folder / "report.html"
    build_report(ReportRequest(results=results, images_dir=None, out=out, manifest=None))
    return out
