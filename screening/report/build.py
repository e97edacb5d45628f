"""Build a run's report: rows from the results, pictures from the asset folder, facts from the run.

Used at the end of ``screen folder --report`` (the pictures were made while screening) and by
``screen report`` (pictures missing from the asset folder are made from the image files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..attention import QUERY_LABELS
from ..errors import InputError
from ..images import discover_images
from ..manifest import Manifest
from ..metadata import MetadataVocabulary
from ..results import OK, display_name, summary_path
from .operating_point import point_shown
from .render import ReportHeader, asset_folder, render_report, write_report
from .rows import Results, read_results, screened_fingerprints
from .views import ViewWriter, read_views, screened_metadata, thumbnails_from_files

METADATA_CHANGED = "metadata changed since screening"  # today's patients CSV differs from the model's


@dataclass
class ReportRequest:
    """What to build the report from."""

    results: Path  # the results CSV (or its journal, for a run that did not finish)
    images_dir: Path | None  # the screened folder: for missing thumbnails and images without a result
    out: Path  # the HTML file; its pictures go in ``<stem>_files/`` beside it
    manifest: Manifest | None = None  # readable class names, attention queries, statement
    patients: dict[str, str] | None = None  # image -> patient id, for a journal (the CSV has them)
    meta: dict[str, str] | None = None  # image -> metadata as the model read it
    # image -> the metadata codes behind ``meta`` ("3,1,5"), when read today from a patients CSV:
    # shown only where they are the codes the journal says the image was screened with.
    meta_codes: dict[str, str] | None = None
    backend: str = ""  # what ran; default: from the run's summary JSON


@dataclass
class ReportStats:
    """What building the report did, for the CLI's one-line note and the benchmark."""

    out: Path
    rows: int
    pictures_made: int  # thumbnails decoded from the image files while building (0 after --report)
    missing: int  # images of the folder without a result


def check_report_path(out: Path, images_dir: Path | None = None) -> None:
    """Option checks before any work.

    Raises:
        InputError: naming the unusable path.
    """
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--report {out} is a folder: give a file name such as {out / 'report.html'}")
    if not out.parent.is_dir():
        raise InputError(f"the folder of the report {out} does not exist")
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"the report {out} must be an .html file")
    if images_dir is None:
        return
    images = Path(images_dir).resolve()
    if out.resolve().is_relative_to(images):
        raise InputError(f"the report {out} is inside the images folder: its thumbnails would be "
                         f"screened as images by the next run")
    folder = asset_folder(out).resolve()
    if folder.is_relative_to(images) or images.is_relative_to(folder):
        raise InputError(f"the report's pictures folder {asset_folder(out)} and the images folder {images_dir} "
                         f"overlap: its thumbnails would be screened as images by the next run")


def build_report(request: ReportRequest) -> ReportStats:
    """Read the results, complete the pictures, write the HTML atomically.

    Raises:
        InputError: the results cannot be read, or the report cannot be written where asked.
    """
    check_report_path(request.out, request.images_dir)
    manifest = request.manifest
    class_names = manifest.class_names if manifest else []
    # A journal has no flags: they are computed with the bundle's default point (see _header).
    point = manifest.operating_point() if manifest is not None and manifest.operating_points else None
    results = read_results(request.results, class_names, request.patients,
                           threshold=point["threshold"] if point else None)
    folder = asset_folder(request.out)
    queries = manifest.attention_queries if manifest and manifest.has_attention else []
    screened = screened_fingerprints(request.results)
    # Pictures of another screening of the same path (a new file, other metadata) are not this
    # row's: made again below rather than shown beside another image's risk.
    views = {image: view for image, view in read_views(folder).items()
             if not view.fingerprint or screened.get(image, view.fingerprint) == view.fingerprint}
    found = _discovered(request.images_dir)  # displayed name -> the file's own name
    made = 0
    without = [found[r.image] for r in results.rows if r.status == OK and r.image not in views and r.image in found]
    if without:
        with ViewWriter(folder, queries, manifest.mask_threshold if manifest else 0.5) as writer:
            for view in thumbnails_from_files(without, Path(request.images_dir), writer, screened):
                views[view.image] = view
                made += bool(view.thumb)
    have = {r.image for r in results.rows}
    missing = [image for image in found if image not in have]
    header = _header(request, results, manifest)
    labels = {c.name: c.label for c in manifest.classes} if manifest else {}
    meta = _meta_as_screened(request.meta, request.meta_codes, screened)
    html = render_report(results, views, header, labels, request.out, meta, missing,
                         [QUERY_LABELS.get(q, f"{q} query") for q in queries])
    try:
        write_report(request.out, html)
    except OSError as exc:
        raise InputError(f"cannot write the report {request.out}: {exc}") from exc
    return ReportStats(Path(request.out), len(results.rows), made, len(missing))


def _meta_as_screened(meta: dict[str, str] | None, codes: dict[str, str] | None,
                      screened: dict[str, str]) -> dict[str, str] | None:
    """Today's metadata where the journal says the image was screened with it, else a note.

    Without a journal (or its fingerprint) there is nothing to compare: today's is shown.
    """
    if meta is None or codes is None:
        return meta
    return {image: text if image not in screened or codes.get(image) == screened_metadata(screened[image])
            else METADATA_CHANGED for image, text in meta.items()}


def _discovered(images_dir: Path | None) -> dict[str, str]:
    """The images of the folder by the name the results show (a name that is not UTF-8 is
    shown with escapes, and opened by its own bytes)."""
    if images_dir is None or not Path(images_dir).is_dir():
        return {}
    return {display_name(image): image for image in discover_images(images_dir).images}


def _header(request: ReportRequest, results: Results, manifest: Manifest | None) -> ReportHeader:
    summary = _summary(request.results)
    point = point_shown(results, summary, manifest)
    notes = []
    bundle_hash = ""
    if manifest is not None and results.bundle and results.bundle not in (manifest.tag, manifest.identity):
        notes.append(f"the results name bundle {results.bundle} but the report was built with "
                     f"{manifest.identity}: class names and attention labels may not match")
    elif manifest is not None:
        bundle_hash = f"manifest sha256 {manifest.digest[:12]}"
    if results.source != "results CSV":
        notes.append(f"built from the {results.source}: only the images it holds are listed")
    return ReportHeader(
        run_date=_run_date(request.results, results),
        bundle=results.bundle or (manifest.tag if manifest else "unknown"),
        bundle_hash=bundle_hash,
        backend=request.backend or str(summary.get("backend", "")),
        statement=manifest.statement if manifest else str(summary.get("statement", "")),
        operating_point=point.text, threshold=point.threshold,
        source=results.source, notes=notes)


def _summary(results_path: Path) -> dict[str, Any]:
    """The run's summary JSON beside the CSV, {} when absent or unreadable."""
    path = summary_path(Path(results_path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_date(results_path: Path, results: Results) -> str:
    """When the rows were screened: the latest ``screened_at`` if the CSV has it, else the file's time."""
    stamps = [r.screened_at for r in results.rows if r.screened_at]
    if stamps:
        return max(stamps)
    path = Path(results_path)
    for candidate in (path, path.with_name(path.name + ".journal")):
        if candidate.is_file():
            stamp = datetime.fromtimestamp(candidate.stat().st_mtime, timezone.utc)
            return stamp.isoformat(timespec="seconds")
    return ""


def view_writer(report: Path | None, manifest: Manifest) -> ViewWriter | None:
    """Where ``screen folder --report`` records pictures while screening; None without --report."""
    if report is None:
        return None
    queries = manifest.attention_queries if manifest.has_attention else []
    return ViewWriter(asset_folder(report), queries, manifest.mask_threshold)


def metadata_as_read(jobs: Iterable[Any], vocabulary: MetadataVocabulary) -> dict[str, str]:
    """image -> "50-59 · male · upper_body": the metadata the model was given, per image job."""
    ages, sexes, sites = vocabulary.age_bins, vocabulary.sexes, vocabulary.sites
    return {display_name(job.image): f"{ages[job.meta.age]} · {sexes[job.meta.sex]} · {sites[job.meta.site]}"
            for job in jobs}


def metadata_codes(jobs: Iterable[Any]) -> dict[str, str]:
    """image -> "3,1,5": the metadata codes of each job, as its fingerprint carries them."""
    return {display_name(job.image): screened_metadata(job.fingerprint) for job in jobs}
