"""A screened folder with its HTML report, for the report tests: a tiny bundle with attention maps
and an operating point, hostile patient ids, a corrupt image, and one image with no metadata row."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from click.testing import Result

from bundle_factory import build_bundle, lesion_rgb, patient_row, write_image, write_patients
from folder_runner import run_folder

HOSTILE_IDS = {3: "<script>window.__pwned = 1</script>", 5: "=cmd|' /C calc'!A0", 7: "O'Brien & <b>Sons</b>"}
POINT = {"name": "sens95", "target_sensitivity": 0.95, "threshold": 0.5, "sensitivity": 0.95,
         "specificity": 0.5, "n_malignant": 40, "n_benign": 60, "fitted_on": "tests"}


def bundle_with_maps(folder: Path) -> Path:
    """The tiny bundle with the attention output and one operating point (threshold 0.5)."""
    build_bundle(folder, attention=True)
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data["operating_points"] = [POINT]
    path.write_text(json.dumps(data, indent=2))
    return folder


def screened_folder(tmp_path: Path, n: int = 12) -> dict[str, Path]:
    """Images (one corrupt, one without a patients row), patients.csv with hostile ids, a bundle."""
    images = tmp_path / "images"
    rows = []
    for index in range(n):
        name = f"img_{index:03d}.{'png' if index % 3 else 'jpg'}"
        write_image(images / name, lesion_rgb(index, size=96))
        row = patient_row(index, name)
        row["patient_id"] = HOSTILE_IDS.get(index, f"P{index // 2:03d}")  # two lesions per patient
        if index != n - 1:  # the last image has no metadata row
            rows.append(row)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return {"images": images, "meta": write_patients(tmp_path / "patients.csv", rows),
            "bundle": bundle_with_maps(tmp_path / "engines" / "maps"), "out": tmp_path / "results.csv",
            "report": tmp_path / "report.html"}


def screen_with_report(paths: dict[str, Path], *extra: object) -> Result:
    return run_folder(paths["images"], paths["meta"], paths["out"], paths["bundle"], "--report", paths["report"],
                      "--quiet", *extra, batch_size=4, workers=2)


def report_of_csv(folder: Path, text: str, manifest=None) -> Path:
    """The report of a results CSV written as ``text`` into ``folder`` (no images folder): what a
    reviewer sees of hand-made or damaged results; ``manifest``: the bundle the report is built with."""
    from screening.report.build import ReportRequest, build_report

    results = folder / "results.csv"
    results.write_text(text, encoding="utf-8")
    out = folder / "report.html"
    build_report(ReportRequest(results=results, images_dir=None, out=out, manifest=manifest))
    return out


def page_data(report: Path) -> dict:
    """The page's worklist data, parsed as strictly as a browser's JSON.parse (no NaN, no Infinity)."""
    html = report.read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    return json.loads(block.group(1), parse_constant=_not_json)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON: the browser's JSON.parse would throw")


def header_fact(report: Path, term: str) -> str:
    """The text of one of the header's facts as a reader sees it, e.g. header_fact(report, "Operating point")."""
    page = report.read_text(encoding="utf-8")
    return html.unescape(re.search(rf"<dt>{re.escape(term)}</dt><dd[^>]*>(.*?)</dd>", page, re.S).group(1))
