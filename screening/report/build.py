"""Build a run's report: rows from the results, pictures from the asset folder, facts from the run.

Used at the end of ``screen folder --report`` (the pictures were made while screening) and by
``screen report`` (pictures missing from the asset folder are made from the image files).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..atomic import temp_name_bytes
from ..attention import QUERY_LABELS
from ..errors import InputError
from ..images import discover_images, is_folder
from ..stalled_reads import DEFAULT_STALL_S, StallGuard, stalled_line, while_progressing
from ..output_watch import OutputWatch, watched, write_stall_s
from ..journal import lock_path
from ..output_paths import name_limit, output_folders
from ..manifest import Manifest
from ..metadata import MetadataVocabulary
from ..results import OK, display_name, summary_path
from .operating_point import flag_as_risk, point_shown
from .render import ReportHeader, asset_folder, render_report, write_report
from .rows import (CSV_SOURCE, Results, journal_screenings, read_results, results_stalled, risk_as_summed,
                   same_bundle)
from .views import View, ViewWriter, read_view_records, screened_metadata, thumbnails_from_files, tidy

METADATA_CHANGED = "metadata changed since screening"  # today's patients CSV differs from the model's
# Shown instead of a picture where the journal holds no line of the row's screening.
NOT_IN_JOURNAL = "no picture: the run's journal no longer says which file was screened"


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
    # Seconds to wait for an image file (a thumbnail's read) or the folder listing on a drive that
    # stopped answering (screening.stalled_reads): the --decode-timeout of `screen folder --report`
    # or of `screen report`.
    read_timeout_s: float = DEFAULT_STALL_S
    # The watchdog of the command's writes (screening.output_watch): writing the page is one of its
    # steps. None: unwatched (a library caller writing to a local folder).
    watch: OutputWatch | None = None


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
    # The page is written through a temp name 18 bytes longer (screening.atomic), at the very
    # end of a night: it must fit its folder now. (The pictures folder, NAME_files, is at most
    # 2 bytes longer than the name, so it fits whenever the temp name does.)
    limit, needed = name_limit(out.parent), temp_name_bytes(out)
    if needed > limit:
        raise InputError(f"the report {out} is too long a file name for its folder ({out.name} is written through "
                         f"a temp name {needed - len(os.fsencode(out.name))} bytes longer, {needed} bytes, the "
                         f"limit is {limit}): choose a name at least {needed - limit} bytes shorter")
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
                           threshold=point["threshold"] if point else None, stall_s=request.read_timeout_s)
    if manifest is not None and results.source == CSV_SOURCE:  # a journal's lines are checked as they are read
        malignant = [spec.name for spec in manifest.classes if spec.malignant]
        results.rows = [risk_as_summed(row, malignant, manifest.identity) for row in results.rows]
    folder = asset_folder(request.out)
    queries = manifest.attention_queries if manifest and manifest.has_attention else []
    records = while_progressing(lambda beat: read_view_records(folder), request.read_timeout_s, lambda: InputError(
        stalled_line(f"the report's pictures folder {folder}", "it was being read", request.read_timeout_s)))
    views = _pictures_of_each_row(results, records)
    found = _discovered(request.images_dir, request)  # displayed name -> the file's own name
    made = 0
    ok = [r for r in results.rows if r.status == OK]
    without = [found[r.image] for r in ok if r.image not in views and r.image in found]
    if without:
        rows = {r.image: r for r in ok}
        with ViewWriter(folder, queries, manifest.mask_threshold if manifest else 0.5,
                        bundle=manifest.identity if manifest else "", watch=request.watch) as writer, \
                StallGuard(request.read_timeout_s) as reads:
            # Each thumbnail is made for its row's screening: the file must still be the one
            # screened (its fingerprint), and it is named by the row's bundle, not today's.
            for view in thumbnails_from_files(without, Path(request.images_dir), writer, reads,
                                              {i: r.fingerprint for i, r in rows.items() if r.fingerprint},
                                              {i: r.bundle for i, r in rows.items() if r.bundle}):
                views[view.image] = view
                made += bool(view.thumb)
    have = {r.image for r in results.rows}
    missing = [image for image in found if image not in have]
    header = _header(request, results, manifest)
    if results.source == CSV_SOURCE and header.threshold is not None:  # the run's point, from its summary
        results.rows = [flag_as_risk(row, header.threshold) for row in results.rows]
    labels = {c.name: c.label for c in manifest.classes} if manifest else {}
    screened = {r.image: r.fingerprint for r in results.rows if r.fingerprint is not None}
    meta = _meta_as_screened(request.meta, request.meta_codes, screened)
    html = render_report(results, views, header, labels, request.out, meta, missing,
                         [QUERY_LABELS.get(q, f"{q} query") for q in queries])
    try:
        with watched(request.watch, f"writing the report {Path(request.out).name}"):
            write_report(request.out, html)
    except OSError as exc:
        raise InputError(f"cannot write the report {request.out}: {exc}") from exc
    # After the page is written: a crash in between leaves spare pictures, never missing ones. The
    # tidying reads the journal and the lock again and removes files: on a drive that stopped
    # answering it is given up after a write's time limit (its thread left behind), and the next
    # report tidies instead.
    with suppress(_TidyingStalled):
        while_progressing(lambda beat: _tidy_unless_a_run_writes(folder, views.values(), request.results),
                          write_stall_s(request.read_timeout_s), _TidyingStalled)
    return ReportStats(Path(request.out), len(results.rows), made, len(missing))


def _pictures_of_each_row(results: Results, records: list[View]) -> dict[str, View]:
    """For each ok row, the latest recorded pictures of its own screening (image, fingerprint,
    bundle). A row the journal does not vouch for, while a journal exists, gets a note instead:
    which screening its pictures would have to show cannot be told."""
    by_image: dict[str, list[View]] = {}
    for view in records:
        by_image.setdefault(view.image, []).append(view)
    chosen: dict[str, View] = {}
    for row in results.rows:
        if row.status != OK:
            continue
        if row.fingerprint is None and results.has_journal:
            chosen[row.image] = View(row.image, "", (0, 0), bundle=row.bundle, note=NOT_IN_JOURNAL)
            continue
        for view in reversed(by_image.get(row.image, [])):
            # No fingerprint at all (no journal): the latest of the row's bundle, unchecked.
            if (row.fingerprint is None or view.fingerprint == row.fingerprint) and same_bundle(view.bundle, row.bundle):
                chosen[row.image] = view
                break
    return chosen


class _TidyingStalled(Exception):
    """Tidying the pictures found a drive that stopped answering."""


def _tidy_unless_a_run_writes(folder: Path, shown: Iterable[View], results: Path) -> None:
    if folder.is_dir() and not _another_run_writes(results):
        _tidy_pictures(folder, shown, results)


def _tidy_pictures(folder: Path, shown: Iterable[View], results: Path) -> None:
    """Keep the pictures this page shows, and those of the journal's latest screenings (a run
    killed before its CSV, to be resumed, wants them); remove the rest."""
    wanted = {(s.image, s.fingerprint, s.bundle) for s in journal_screenings(results)}
    keep = [view for view in read_view_records(folder) if view.screening in wanted]
    keep += [view for view in shown if not view.note]
    try:
        tidy(folder, keep)
    except OSError:
        pass  # the page is written; spare pictures cost only disk, and the next run tries again


def _another_run_writes(results: Path) -> bool:
    """Whether another process holds the output lock of these results (``screen folder`` under
    way): its pictures and views.jsonl appends must not be tidied away under it."""
    results = Path(results)
    output = results.with_name(results.name[:-len(".journal")]) if results.name.endswith(".journal") else results
    try:
        fd = os.open(lock_path(output), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: no run
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        # ``screen folder --report`` builds its page while holding the lock itself.
        try:
            owner = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        except (OSError, ValueError, RecursionError):  # RecursionError: nested thousands deep
            return True
        return not (isinstance(owner, dict) and owner.get("pid") == os.getpid()
                    and owner.get("host") == socket.gethostname())
    finally:
        os.close(fd)


def _meta_as_screened(meta: dict[str, str] | None, codes: dict[str, str] | None,
                      screened: dict[str, str]) -> dict[str, str] | None:
    """Today's metadata where the journal says the image was screened with it, else a note.

    Without a journal (or its fingerprint) there is nothing to compare: today's is shown.
    """
    if meta is None or codes is None:
        return meta
    return {image: text if image not in screened or codes.get(image) == screened_metadata(screened[image])
            else METADATA_CHANGED for image, text in meta.items()}


def _discovered(images_dir: Path | None, request: ReportRequest) -> dict[str, str]:
    """The images of the folder by the name the results show (a name that is not UTF-8 is
    shown with escapes, and opened by its own bytes)."""
    if images_dir is None or not is_folder(images_dir, request.read_timeout_s):
        return {}
    listed = discover_images(images_dir, run_outputs(request), stall_s=request.read_timeout_s)
    return {display_name(image): image for image in listed.images}


def run_outputs(request: ReportRequest) -> list:
    """The run's own output folders, as the run left them out of its images (a link to them is
    not the folder's images): the results may be named by their CSV or by its journal."""
    results = Path(request.results)
    if results.name.endswith(".journal"):
        results = results.with_name(results.name[:-len(".journal")])
    return output_folders(results, report=request.out)


def _header(request: ReportRequest, results: Results, manifest: Manifest | None) -> ReportHeader:
    # The summary and the files' times, as the results, from a drive that may have stopped answering.
    summary, run_date = while_progressing(
        lambda beat: (_summary(request.results), _run_date(request.results, results)), request.read_timeout_s,
        lambda: results_stalled(Path(request.results), request.read_timeout_s))
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
    notes.extend(results.notes)
    return ReportHeader(
        run_date=run_date,
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
    except (OSError, ValueError, RecursionError):  # RecursionError: nested thousands deep
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


def view_writer(report: Path | None, manifest: Manifest, watch: OutputWatch | None = None) -> ViewWriter | None:
    """Where ``screen folder --report`` records pictures while screening, its writes steps of
    ``watch``; None without --report."""
    if report is None:
        return None
    queries = manifest.attention_queries if manifest.has_attention else []
    # The identity the results CSV and the journal write: a view of another bundle is not reused.
    return ViewWriter(asset_folder(report), queries, manifest.mask_threshold, bundle=manifest.identity, watch=watch)


def metadata_as_read(jobs: Iterable[Any], vocabulary: MetadataVocabulary) -> dict[str, str]:
    """image -> "50-59 · male · upper_body": the metadata the model was given, per image job."""
    ages, sexes, sites = vocabulary.age_bins, vocabulary.sexes, vocabulary.sites
    return {display_name(job.image): f"{ages[job.meta.age]} · {sexes[job.meta.sex]} · {sites[job.meta.site]}"
            for job in jobs}


def metadata_codes(jobs: Iterable[Any]) -> dict[str, str]:
    """image -> "3,1,5": the metadata codes of each job, as its fingerprint carries them."""
    return {display_name(job.image): screened_metadata(job.fingerprint) for job in jobs}
