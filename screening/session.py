"""A whole ``screen folder`` run: up-front checks, journal and lock, ranked CSV and summary JSON."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from . import __version__
from .backends import open_backend
from .backends.bundle import BundleBackend
from .errors import BundleError, InputError
from .tta import TTA_MODES
from .images import Discovery, discover_images, listing_stalled, no_images
from .journal import Journal, OutputLock
from .manifest import Manifest, load_manifest
from .output_paths import check_output_location, output_folders
from .output_watch import OutputWatch, write_stall_s
from .decode_pool import DEFAULT_TIME_BUDGET_S, DecodeLimits
from .stalled_reads import StallGuard, check_stall_s, stalled_line, while_progressing
from .images import DEFAULT_MAX_DECODE_BYTES
from .operating_points import REFER, flag
from .patients import PatientTable, read_patients
from .pipeline import (DEFAULT_BATCH_SIZE, ImageJob, PipelineOptions, failed_in_the_models, plan_jobs,
                       screen_jobs, split_finished)
from .progress import Reporter
from .report.build import ReportRequest, build_report, check_report_path, metadata_as_read, view_writer
if TYPE_CHECKING:  # Ray is an optional extra, imported only by a --ray run
    from .distributed.run import RayScreening, RaySettings
from .results import (OK, Outcome, ResultRow, Summary, rank_rows, summary_path, top_risks, write_history, write_results_csv,
                      write_summary_json)


@dataclass(frozen=True)
class FolderRequest:
    """Everything ``screen folder`` was asked to do."""

    images_dir: Path
    meta_csv: Path
    output: Path  # the results CSV; journal, lock and summary JSON live beside it
    bundle_dir: Path
    backend: str = "auto"  # auto, onnxruntime or tensorrt
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None  # decoder threads; None = one per CPU
    resume: bool = False  # reuse the journal of an earlier run
    save_masks: Path | None = None
    decode_timeout_s: float = DEFAULT_TIME_BUDGET_S  # wall-clock seconds per image
    max_decode_mib: int = DEFAULT_MAX_DECODE_BYTES // 2**20  # decoder memory per image
    ray: RaySettings | None = None  # screen on a Ray cluster (screening.distributed); None = here
    keep_columns: bool = False  # copy extra patients.csv columns to the output
    on_bundle_change: str = "rescreen"  # --resume with another bundle: "rescreen" all, or "fail"
    columns: tuple[tuple[str, str], ...] = ()  # --column FIELD=HEADER: the clinic's own names
    report: Path | None = None  # the HTML review report (screening.report); None = none
    operating_point: str | None = None  # name of the bundle's point for the flag; None = its default
    tta: str | None = None  # test-time augmentation (screening.tta); None = the bundle's default
    allow_empty: bool = False  # no image files: write an empty CSV instead of failing


def check_request(request: FolderRequest) -> None:
    """Option checks that need no file contents.

    Raises:
        InputError: naming the unusable option, or saying that its paths stopped answering
            (nothing for ``--decode-timeout`` seconds).
    """
    if request.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {request.batch_size}")
    if request.tta is not None and request.tta not in TTA_MODES:
        raise InputError(f"--tta {request.tta!r} is not one of {', '.join(TTA_MODES)}")
    if request.workers is not None and request.workers < 1:
        raise InputError(f"--workers must be at least 1, got {request.workers}")
    check_stall_s(request.decode_timeout_s)
    if request.max_decode_mib < 1:
        raise InputError(f"--max-decode-mib must be at least 1, got {request.max_decode_mib}")
    if request.ray is not None and request.save_masks is not None:
        # Here, before the lock and the journal: refused once the run started, it would leave a
        # journal that the next plain run refuses without --resume.
        raise InputError("--save-masks is not available with --ray yet: the mask files would be "
                         "written by the workers")
    # The paths are looked up on drives that may have stopped answering (a silent share blocks
    # even a look at its folder): such a night stops here with one line, it does not hang.
    stall_s = request.decode_timeout_s
    while_progressing(lambda beat: _check_paths(request), stall_s, lambda: InputError(stalled_line(
        f"the images folder {request.images_dir}, the metadata CSV {request.meta_csv} or the output folder "
        f"{Path(request.output).parent}", "they were being looked up", stall_s)))


def _check_paths(request: FolderRequest) -> None:
    """The checks of :func:`check_request` that look at the files and folders named."""
    check_output_location(request.output, request.images_dir, request.meta_csv, bundle_dir=request.bundle_dir)
    if request.save_masks is not None:
        masks = Path(request.save_masks)
        if masks.exists() and not masks.is_dir():
            raise InputError(f"--save-masks {masks} exists and is not a folder")
        images = Path(request.images_dir).resolve()
        if masks.resolve().is_relative_to(images):
            raise InputError(f"--save-masks {masks} is inside the images folder: the mask PNGs "
                             f"would be screened as images by the next run")
        if images.is_dir() and images.is_relative_to(masks.resolve()):  # not a folder: discovery says so
            # Masks keep the images' relative paths: with --save-masks /data for /data/images,
            # the image images/a.jpg (of a sub-folder images/) gets /data/images/a.jpg.mask.png.
            raise InputError(f"--save-masks {masks} holds the images folder {request.images_dir}: mask PNGs "
                             f"would be written among the images and screened by the next run; give a "
                             f"masks folder beside the images folder, not above it")
    if request.report is not None:
        check_report_path(request.report, request.images_dir)


def discover(request: FolderRequest) -> Discovery:
    """The images the run screens (its own output folders left out), with ``--out`` checked
    against them; ``screen folder --check`` finds them the same way.

    Both wait at most ``--decode-timeout`` for a drive that stopped answering (the listing looks
    up every file, and the real path of each linked one; the check looks up the output files).

    Raises:
        InputError: the images folder cannot be used, or ``--out`` would land on an image.
        ImagesUnreachable: the images folder stopped answering while it was being listed.
    """
    stall_s = request.decode_timeout_s
    discovery = discover_images(request.images_dir, output_folders(request.output, request.save_masks, request.report),
                                stall_s=stall_s)

    def check_against_images(beat: Callable[[], None]) -> None:
        # Again with the images found: one reached through a link may be where --out points.
        check_output_location(request.output, request.images_dir, request.meta_csv,
                              _beating(discovery.linked.values(), beat), request.bundle_dir)

    while_progressing(check_against_images, stall_s, lambda: listing_stalled(Path(request.images_dir), stall_s))
    return discovery


def _beating(items: Iterable[str], beat: Callable[[], None]) -> Iterator[str]:
    """``items``, calling ``beat`` as each is taken: progress of a step that looks each one up."""
    for item in items:
        beat()
        yield item


def screen_folder(request: FolderRequest, reporter: Reporter | None = None) -> Summary:
    """Screen every image of a folder and write the ranked CSV and the summary JSON.

    Everything that can be checked up front (options, images folder, patients CSV, bundle
    manifest and sha256s, backend, model inputs against the manifest, the output lock and
    journal) is checked before the first image is decoded.

    Args:
        request: what to screen and where to write.
        reporter: where notes, warnings and progress go (default: stdout/stderr).

    Returns:
        The run summary (also written beside the CSV).

    Raises:
        InputError, MetadataError, BundleError, BackendUnavailable, OutputLocked: before any
            image is screened.
    """
    started = time.monotonic()
    started_at = utc_now()
    reporter = reporter or Reporter()
    check_request(request)
    discovery = discover(request)
    for message in discovery.skipped:
        reporter.warn(message)
    # The table sees every image so that a key fitting several images is reported, not guessed.
    table = read_patients(request.meta_csv, images=discovery.images, columns=dict(request.columns),
                          stall_s=request.decode_timeout_s)
    manifest = load_manifest(request.bundle_dir, stall_s=request.decode_timeout_s)
    if not discovery.images and not request.allow_empty:
        # Before anything is written: last night's results stay, and the job fails loudly.
        raise no_images(discovery)
    tta_note = None
    if request.tta is not None and request.tta != manifest.tta:
        # Another TTA gives other numbers: carried in the manifest it is part of what the
        # journal compares, so a resume never mixes rows screened with and without it.
        if manifest.operating_points:
            tta_note = (f"the operating points were fitted on scores screened with the bundle's TTA "
                        f"({manifest.tta}); with --tta {request.tta} the flag's sensitivity and specificity "
                        f"may differ from the manifest's (fit your own: docs/validation.md)")
        manifest = dataclasses.replace(manifest, tta=request.tta)
    point = manifest.operating_point(request.operating_point)
    if tta_note and point is not None:
        reporter.warn(tta_note)
    backend, note = _open_backend(request, manifest)
    # Every write to the output folder is watched from here on (screening.output_watch): a share
    # that stops answering ends the run with one line; what was journaled stays for --resume.
    watch = OutputWatch(Path(request.output).parent, write_stall_s(request.decode_timeout_s), reporter.log)
    with backend, watch:
        reporter.info(f"backend: {backend.description} ({note})")
        with OutputLock(request.output, watch) as lock:
            for message in lock.notes:
                reporter.warn(message)
            with Journal.open(request.output, manifest, resume=request.resume,
                              on_bundle_change=request.on_bundle_change,
                              backend=backend.results_backend, watch=watch) as journal:
                for message in (*table.warnings, *journal.notes):
                    reporter.warn(message)
                jobs = plan_jobs(discovery.images, table, manifest.metadata)
                run = _run(request, jobs, backend, journal, reporter, watch)
                refuse_a_broken_night(run, request.output)
                ranked = rank_rows(ResultRow(run.outcomes[job.image], job.patient_id,
                                             (*job.warnings, *run.outcomes[job.image].warnings),
                                             job.extra, new=job.image in run.new) for job in jobs)
                with watch.step(f"writing the results CSV {Path(request.output).name}"):
                    write_results_csv(request.output, watch.beating(ranked), manifest,
                                      table.extra_columns if request.keep_columns else [],
                                      threshold=point["threshold"] if point else None)
                journal.compact(run.outcomes[job.image] for job in jobs)
                # Still under the lock: a run started meanwhile must not write its summary or
                # report between this run's CSV and this run's summary.
                summary = summarise(request, manifest, backend.description, note, discovery.ignored, table,
                                    jobs, ranked, run, time.monotonic() - started, point, started_at)
                with watch.step(f"writing the summary {summary_path(request.output).name}"):
                    write_summary_json(summary, summary_path(request.output))
                    # The run history: one dated copy per run, so last week's nights can still be audited.
                    write_history(summary, request.output, started_at, reporter.warn)
                if request.report is not None:
                    _write_report(request, manifest, backend.description, jobs, watch)
                    reporter.info(f"report: {request.report}")
    return summary


def _write_report(request: FolderRequest, manifest: Manifest, backend: str, jobs: list[ImageJob],
                  watch: OutputWatch) -> None:
    build_report(ReportRequest(results=request.output, images_dir=request.images_dir, out=request.report,
                               manifest=manifest, backend=backend, meta=metadata_as_read(jobs, manifest.metadata),
                               read_timeout_s=request.decode_timeout_s, watch=watch))


@dataclass
class _RunResult:
    outcomes: dict[str, Outcome]  # by image path: reused and new
    screened: int
    reused: int
    new: frozenset[str] = frozenset()  # images screened by this job: this run or an interrupted one
    screened_now: frozenset[str] = frozenset()  # images screened by this run
    repeats: frozenset[str] = frozenset()  # of those, failed again exactly as the last finished run showed
    # Of those, failed again exactly as a run that never finished journaled them (one refused by
    # refuse_a_broken_night, or interrupted): no news about the models either, but never shown.
    unshown_repeats: frozenset[str] = frozenset()


def _open_backend(request: FolderRequest, manifest: Manifest) -> tuple[BundleBackend | RayScreening, str]:
    """The backend of this process, or with ``--ray`` the cluster (whose workers open the bundle)."""
    if request.ray is None:
        return open_backend(request.backend, request.bundle_dir, manifest, batch_size=request.batch_size,
                            stall_s=request.decode_timeout_s)
    from .distributed.run import RayScreening

    return (RayScreening(request.ray, request.bundle_dir, manifest, request.backend, request.batch_size,
                         request.decode_timeout_s),
            f"--ray {request.ray.address}")


def _stream(backend: BundleBackend | RayScreening, jobs: list[ImageJob], root: Path,
            options: PipelineOptions, done: dict[str, Outcome]) -> Iterator[list[Outcome]]:
    if isinstance(backend, BundleBackend):
        return screen_jobs(jobs, root, backend, options, done=done)
    return backend.screen_jobs(jobs, root, options, done=done)


def _run(request: FolderRequest, jobs: list[ImageJob], backend: BundleBackend, journal: Journal,
         reporter: Reporter, watch: OutputWatch | None = None) -> _RunResult:
    """Screen the jobs the journal does not already hold, journaling each batch."""
    workers = request.workers or default_workers()
    # Journaled images are hashed to see whether their content changed (reading is I/O and
    # hashlib releases the GIL, so the decoder thread count suits this too). Each read waits
    # at most --decode-timeout: a stalled network drive must not hang the night here either.
    # The guard closes first, so that an interrupt does not wait for the pool's stuck reads.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool, \
            StallGuard(request.decode_timeout_s) as reads:
        reused, todo = split_finished(jobs, journal.finished, request.save_masks,
                                      root=Path(request.images_dir), pool=pool, digest=reads.digest)
    if not jobs:
        reporter.warn(f"no image files found in {request.images_dir} "
                      f"(looked for .jpg .jpeg .png .bmp .tif .tiff)")
    if reused:
        reporter.info(f"resuming: {len(reused)} of {len(jobs)} images already screened "
                      f"({journal.path}), {len(todo)} to go")
    # Report pictures are made from the pixels decoded here; on a Ray cluster the report
    # decodes its thumbnails at the end instead.
    views = view_writer(request.report, backend.manifest, watch) if isinstance(backend, BundleBackend) else None
    options = PipelineOptions(batch_size=request.batch_size,
                              workers=workers,
                              save_masks=Path(request.save_masks) if request.save_masks else None,
                              views=views, watch=watch,
                              limits=DecodeLimits(request.decode_timeout_s, request.max_decode_mib * 2**20))
    outcomes = dict(reused)
    # closing(): an interrupt stops the stream (and kills its decoder processes) right here,
    # not whenever the garbage collector gets to it.
    with views or nullcontext(), reporter.progress(len(todo)) as progress, \
            closing(_stream(backend, jobs, Path(request.images_dir), options, reused)) as stream:
        for batch in stream:
            stamp = utc_now()
            batch = [replace(outcome, screened_at=stamp) for outcome in batch]
            # A failure the journal already holds as this image's latest line (all but the time)
            # is not written again: a night refused over and over must not grow the journal.
            journal.append(outcome for outcome in batch
                           if not journaled_as(journal.finished.get(outcome.image), outcome))
            outcomes.update((outcome.image, outcome) for outcome in batch)
            progress.update(len(batch))
    # New to the reader: screened now, or by an interrupted run of this job (journal.fresh); but
    # not an image that failed again exactly as the last finished run showed it, or a file
    # refused every night would be `new` every morning and the column would stop meaning
    # "changed since you last looked". (A fresh line was never shown: it is no "again".)
    again = frozenset(job.image for job in todo
                      if failed_again(journal.finished.get(job.image), outcomes.get(job.image)))
    repeats = again - journal.fresh
    new = frozenset(job.image for job in todo if job.image not in repeats) | (journal.fresh & set(reused))
    return _RunResult(outcomes, screened=len(todo), reused=len(reused), new=new,
                      screened_now=frozenset(job.image for job in todo), repeats=repeats,
                      unshown_repeats=again & journal.fresh)


def refuse_a_broken_night(run: _RunResult, output: Path) -> None:
    """Stop before the results are replaced when every image that reached the models failed there.

    A bundle that loads and verifies yet gives NaN (or throws) on every image would otherwise
    turn last night's worklist into a list of error rows, exit 0, and raise no alarm. The failed
    rows stay in the journal as retryable, so the next run (--resume) screens them again.

    Raises:
        BundleError: every image screened by this run failed in the models.
    """
    # Only the images that reached the models tell about them (a file too large to decode does
    # not); an image that fails again exactly as the last results showed (one lesion whose FP16
    # output always overflows) is no news about the bundle, and must not stop every quiet night.
    # Nor must one that fails as the journal's latest line says although no results showed it
    # yet (the night it came, this guard refused that night): it would refuse every night after,
    # never reaching the CSV. That excuse needs a result of this bundle that is ok (the journal
    # holds only this bundle's lines), else a bundle failing on every image would pass the guard
    # on its second night and replace the last good results with error rows.
    reached = [run.outcomes[image] for image in sorted(run.screened_now) if image in run.outcomes
               and (run.outcomes[image].status == OK or failed_in_the_models(run.outcomes[image]))]
    known = run.repeats
    if any(outcome.status == OK for outcome in run.outcomes.values()):
        known = known | run.unshown_repeats
    failed = [outcome for outcome in reached if outcome.image not in known]
    if failed and all(outcome.status != OK for outcome in reached):
        raise BundleError(f"every one of the {len(reached)} images screened failed in the models (e.g. "
                          f"{failed[0].error}): the bundle or the backend looks broken; {output} and its "
                          f"summary were left as they were. Check the bundle (screen bundle verify, --backend "
                          f"onnxruntime), then run again with --resume")


def failed_again(before: Outcome | None, now: Outcome | None) -> bool:
    """Whether ``now`` is the same error row, for the same file, as ``before``."""
    return (before is not None and now is not None and before.status != OK and now.status != OK
            and before.fingerprint == now.fingerprint and before.error == now.error)


def journaled_as(before: Outcome | None, now: Outcome) -> bool:
    """Whether ``now`` is an error row the journal already holds as ``before``, all but its time."""
    return (before is not None and now.status != OK
            and replace(now, screened_at=before.screened_at) == before)


def utc_now() -> str:
    """The time now in UTC, ISO 8601 to the second: what rows and summaries are stamped with."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_workers() -> int:
    """One decoder thread per CPU this process may use (decoding releases the GIL)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def summarise(request: FolderRequest, manifest: Manifest, backend: str, note: str,
              ignored: list[str], table: PatientTable, jobs: list[ImageJob],
              ranked: list[tuple[int | None, ResultRow]], run: _RunResult, elapsed: float,
              point: dict | None = None, started_at: str = "") -> Summary:
    """The end-of-run summary: counts, what did not match, top risks, referrals and speed."""
    status = {"ok": 0, "error": 0}
    for _, row in ranked:
        status[row.outcome.status] = status.get(row.outcome.status, 0) + 1
    return Summary(
        output=str(request.output), bundle=manifest.identity, backend=backend, backend_note=note,
        images=len(ranked), status=status, screened=run.screened, reused=run.reused,
        ignored_files=list(ignored),
        metadata_rows_without_image=table.unmatched_keys(job.row_key for job in jobs if job.row_key),
        duplicate_keys=dict(table.duplicate_keys),
        metadata_warnings=list(table.warnings),
        images_without_metadata=sum(1 for job in jobs if job.row_key is None),
        rows_with_warnings=sum(1 for _, row in ranked if row.warnings),
        top_risks=top_risks(ranked), elapsed_s=round(elapsed, 3),
        images_per_s=round(run.screened / elapsed, 3) if elapsed > 0 else 0.0,
        statement=manifest.statement,
        started_at=started_at, finished_at=utc_now(), host=socket.gethostname(),
        tool_version=__version__, bundle_sha256=manifest.digest, new_rows=len(run.new),
        inputs={"images_dir": str(Path(request.images_dir).resolve()),
                "meta_csv": str(Path(request.meta_csv).resolve()),
                "bundle_dir": str(Path(request.bundle_dir).resolve()),
                "output": str(Path(request.output).resolve())},
        operating_point=point,
        referrals=None if point is None else sum(
            1 for _, row in ranked if row.outcome.status == OK and flag(row.outcome.risk, point["threshold"]) == REFER),
    )
