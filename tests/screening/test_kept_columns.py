"""--keep-columns copies a clinic's own patients.csv columns into the results: a column named like
one of the results' own (``p_id``, ``p_score``: the ``p_<class>`` probabilities) must stay the
clinic's, never be read back as a class probability by the report or a spreadsheet reader."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from bundle_factory import CLASSES, build_bundle, lesion_rgb, write_image
from folder_runner import run_folder
from report_factory import page_data, report_of_csv

pytestmark = pytest.mark.usefixtures("no_default_bundle")


def screened(tmp_path: Path, bundle: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    for index in range(3):
        write_image(images / f"img_{index}.png", lesion_rgb(index))
    meta = tmp_path / "patients.csv"
    meta.write_text("image,age,p_id,p_score\nimg_0.png,40,P123,0.99\nimg_1.png,50,P124,0.98\n"
                    "img_2.png,60,P125,0.97\n")
    out, report = tmp_path / "results.csv", tmp_path / "report.html"
    result = run_folder(images, meta, out, bundle, "--keep-columns", "--report", report)
    assert result.exit_code == 0, result.output
    return out, report


def test_a_kept_p_column_is_not_taken_for_a_class_probability_by_the_report(tmp_path: Path, tiny_bundle: Path) -> None:
    """A patients CSV with a p_id column made every row of the report an error ("p_id 'P123' in the
    results CSV is not a number"): no result in the worklist. A p_score of 0.99 was drawn as the
    top class 'score' in place of the model's."""
    _, report = screened(tmp_path, tiny_bundle)
    data = page_data(report)
    assert data["errors"] == []
    assert len(data["rows"]) == 3
    codes = {code for row in data["rows"] for _, code, _ in row["c"]}
    assert codes <= {spec.name for spec in CLASSES}


def test_a_kept_p_column_gets_the_csv_prefix_in_the_results(tmp_path: Path, tiny_bundle: Path) -> None:
    """In the results CSV the clinic's p_id sat beside p_mel and p_nv, read by any tool (and person)
    as one more class's probability; it is csv_p_id, as a clinic's 'risk' column is csv_risk."""
    out, _ = screened(tmp_path, tiny_bundle)
    header = next(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [name for name in header if name.startswith("p_")] == [f"p_{spec.name}" for spec in CLASSES]
    assert header[-2:] == ["csv_p_id", "csv_p_score"]


def test_a_results_csv_written_before_the_prefix_is_read_with_only_the_bundles_classes(tmp_path: Path) -> None:
    """Results written by an earlier version still have the clinic's p_id and p_score unprefixed:
    the report reads the p_ columns of its bundle's classes only."""
    bundle = build_bundle(tmp_path / "bundle")
    out = report_of_csv(tmp_path, "rank,image,patient_id,risk,flag,status,error,p_nv,p_bkl,p_mel,p_bcc,p_id,p_score\n"
                                  "1,a.jpg,,0.600000,,ok,,0.300000,0.100000,0.500000,0.100000,P123,0.99\n",
                        manifest=bundle)
    data = page_data(out)
    assert data["errors"] == []
    assert [code for _, code, _ in data["rows"][0]["c"]] == ["mel", "nv", "bkl"]


def test_results_of_another_bundles_classes_keep_their_own_probabilities(tmp_path: Path) -> None:
    """Built with a bundle whose classes the CSV lacks, the report shows the CSV's own p_ columns."""
    bundle = build_bundle(tmp_path / "bundle")
    out = report_of_csv(tmp_path, "rank,image,patient_id,risk,flag,status,error,p_benign,p_malignant\n"
                                  "1,a.jpg,,0.700000,,ok,,0.300000,0.700000\n", manifest=bundle)
    assert [code for _, code, _ in page_data(out)["rows"][0]["c"]] == ["malignant", "benign"]
