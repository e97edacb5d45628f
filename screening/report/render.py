"""Render the report page: one Jinja2 template, autoescaped, with the worklist data as JSON.

The page is self-contained and offline: styles and script are inlined, the only other files
are the thumbnails in the asset folder beside it. The worklist is drawn by the page's script
from a JSON block, a page of rows at a time, so a 10,000-image report opens as fast as a small
one. Every text from the data reaches the page through autoescaping (header, errors) or
``textContent`` (worklist), never as markup; a Content-Security-Policy with the script's hash
refuses any other script even if that failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

from ..atomic import atomic_write
from ..results import OK
from .operating_point import risk_text
from .rows import ReportRow, Results
from .views import THUMBS, View

ATTENTION_NOTE = (
    "An attention map shows where the model's metadata and lesion-mask queries looked in the "
    "image (the weights of its cross-attention over image positions, scaled to each map's peak). "
    "It is not an explanation of the diagnosis, not a segmentation, and not evidence that the "
    "highlighted area is malignant: a model can attend to a region and still be wrong about it."
)


@dataclass
class ReportHeader:
    """What the top of the report says about the run."""

    run_date: str  # when the results were written, ISO 8601
    bundle: str  # name@version
    bundle_hash: str  # sha256 prefix of the manifest, "" when unknown
    backend: str  # what ran, "" when unknown
    statement: str  # the bundle's not-for-diagnosis statement
    operating_point: str = ""  # in force, e.g. "sens95 (malignant sensitivity 0.95, refer at risk >= 0.120000)"
    threshold: float | None = None  # the flags' risk threshold, when known: sets the risks' decimals
    source: str = "results CSV"
    notes: list[str] = field(default_factory=list)  # warnings about the report itself


def asset_folder(report: Path) -> Path:
    """``report.html`` -> ``report_files/`` beside it (the browsers' "save page" convention)."""
    report = Path(report)
    return report.with_name(f"{report.stem}_files")


def asset_link(report: Path) -> str:
    """The asset folder as a relative URL from the page: ``night#1_files`` -> ``night%231_files``.

    A report name may hold ``#``, ``?``, ``%`` or spaces, which a browser reads as URL syntax.
    """
    return quote(asset_folder(report).name)


def _environment() -> Environment:
    environment = Environment(loader=PackageLoader("screening.report", "templates"),
                              autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                              lstrip_blocks=True)
    # A NaN in the data block would make the page's JSON.parse fail and blank the worklist:
    # rows.py turns such rows into errors, and this refuses to write a page if one slips through.
    environment.policies["json.dumps_kwargs"] = {"sort_keys": True, "allow_nan": False}
    return environment


def _row_data(row: ReportRow, view: View | None, labels: dict[str, str], meta: str, thumbs: str,
              mark_new: bool, threshold: float | None) -> dict[str, Any]:
    """The compact object the page's script draws one worklist row from."""
    data: dict[str, Any] = {
        "r": row.rank, "i": row.image, "p": row.patient_id, "k": row.risk,
        "c": [[labels.get(code, code), code, round(p, 4)] for code, p in row.top_classes()],
        "a": row.lesion_area, "w": row.warnings, "m": meta, "f": row.flag,
    }
    shown = risk_text(row.risk, threshold)
    if shown is not None:  # more decimals than usual: three would look like the threshold
        data["kt"] = shown
    if mark_new and row.new:
        data["n"] = True
    if view is not None and view.note:  # why there is no picture, e.g. the file changed since
        data["x"] = view.note
    if view is not None and view.thumb:
        data["t"] = f"{thumbs}/{view.thumb}"
        data["s"] = list(view.size)
        if view.outline:
            data["o"] = view.outline
        if view.attention:
            data["h"] = [[a["grid"][0], a["grid"][1], a["values"], a["peak"]] for a in view.attention]
    return data


def render_report(results: Results, views: dict[str, View], header: ReportHeader, labels: dict[str, str],
                  out: Path, meta: dict[str, str] | None = None, missing: list[str] | None = None,
                  queries: list[str] | None = None) -> str:
    """The report HTML.

    Args:
        results: rows in rank order (ok and error).
        views: thumbnails, outlines and attention maps by image.
        header: run facts for the top of the page.
        labels: class code -> readable name, from the manifest.
        out: where the HTML will be written (thumbnail links are relative to it).
        meta: image -> metadata as the model read it, e.g. "50-59 · male · upper_body".
        missing: images of the folder that have no row (an unfinished run, or added since).
        queries: readable names of the attention maps' queries, in order.
    """
    meta = meta or {}
    thumbs = f"{asset_link(out)}/{THUMBS}"
    ok = [r for r in results.rows if r.status == OK]
    errors = [r for r in results.rows if r.status != OK]
    payload = {
        "rows": [_row_data(r, views.get(r.image), labels, meta.get(r.image, ""), thumbs, results.has_new,
                          header.threshold)
                 for r in ok],
        # The by-patient view lists a patient's lesions without a result too, or a patient with
        # two lesions, one unreadable, would look like a patient with one.
        "errors": [{"i": r.image, "p": r.patient_id, "e": r.error} for r in errors],
        "classes": sorted({(labels.get(c, c), c) for r in ok for c, _ in r.top_classes(1)}),
        "queries": queries or [],
        "hasFlag": results.has_flag, "hasNew": results.has_new,
    }
    environment = _environment()
    script = environment.loader.get_source(environment, "report.js")[0]
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    flagged = sum(1 for r in ok if r.flag == "refer")
    return environment.get_template("report.html.j2").render(
        header=header, errors=errors, missing=missing or [], counts={
            "screened": len(ok), "errors": len(errors), "flagged": flagged if results.has_flag else None,
            "missing": len(missing or [])},
        payload=payload, script=script, script_hash=digest, attention_note=ATTENTION_NOTE,
        has_attention=any("h" in row for row in payload["rows"]), has_flag=results.has_flag,
        has_new=results.has_new, queries=queries or [])


def write_report(out: Path, html: str) -> Path:
    """Write the page atomically, readable by the same people as the results."""
    return atomic_write(Path(out), html.encode("utf-8"))
