"""`screen report`: rebuild the HTML review report of a finished (or killed) run without screening."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from .folder import BUNDLE_ENV, EXIT_CODES_HELP, resolve_bundle
from ..stalled_reads import DEFAULT_STALL_S
from .paths import PATH

REPORT_EPILOG = """\b
Examples:
  screen report results.csv --images sample_data/images --out report.html
  screen report results.csv.journal --images /data/clinic/2025-01-07 \\
      --meta /data/clinic/patients.csv --out partial.html

\b
The pictures go in REPORT_files/ beside the HTML; pictures a `screen folder
--report` run left there are reused (with their lesion outlines and attention
maps) where they are of the same screening (same file content, metadata and
bundle, when the run's journal is there to tell), the others are made from the image files (thumbnail only). Pictures
the new page does not need are removed, unless a run is writing RESULTS.

""" + EXIT_CODES_HELP


@click.command(epilog=REPORT_EPILOG)
@click.argument("results", type=PATH)
@click.option("--images", "images_dir", required=True, type=PATH,
              help="The folder that was screened: thumbnails, and images without a result.")
@click.option("--out", "out", default=Path("report.html"), show_default=True,
              type=PATH, help="The HTML report to write.")
@click.option("--meta", "meta_csv", type=PATH, default=None,
              help="The run's patients CSV: shows age/sex/site as the model read them, and patient "
                   "ids when RESULTS is a journal.")
@click.option("--bundle", type=PATH, default=None,
              help=f"The bundle the run used, for readable class names. Default: ${BUNDLE_ENV}, "
                   f"else the repository's engines/starter.")
@click.option("--decode-timeout", type=float, default=DEFAULT_STALL_S, show_default=True, metavar="SECONDS",
              help="Time limit to read one image file for its thumbnail, as `screen folder`'s: a file "
                   "on a stalled network drive gets a note in place of its picture, and after four "
                   "such files the rest are not read. Looking up and listing the images folder, "
                   "reading RESULTS, its journal, --meta and the bundle, wait as long for a silent drive, "
                   "then stop (exit 2); writing the report waits as long but at least 10 s.")
def report(results: Path, images_dir: Path, out: Path, meta_csv: Path | None, bundle: Path | None,
           decode_timeout: float) -> None:
    """Write the HTML review report of the run whose results CSV (or journal) is RESULTS.

    The worklist ranked by risk (rank 1 first) with thumbnails, lesion outlines and attention
    maps where the run recorded them, a per-patient view, filters, and every error row with its
    reason. A run that did not finish is reported from its journal, and the report lists the
    images of the folder that have no result. Nothing is screened.

    Not for diagnosis: every result must be reviewed by a qualified clinician.
    """
    from ..errors import InputError
    from ..images import discover_images, is_folder
    from ..manifest import load_manifest
    from ..output_watch import OutputWatch, write_stall_s
    from ..patients import read_patients
    from ..pipeline import plan_jobs
    from ..report.build import ReportRequest, build_report, metadata_as_read, metadata_codes, run_outputs
    from ..stalled_reads import check_stall_s

    check_stall_s(decode_timeout)  # as screen folder refuses it
    bundle_dir = resolve_bundle(bundle)
    manifest = load_manifest(bundle_dir, verify_files=False, stall_s=decode_timeout)  # names only: no model is run
    if not is_folder(images_dir, decode_timeout):  # at most --decode-timeout on a share that stopped answering
        raise InputError(f"--images {images_dir} is not a folder")
    meta = codes = patients = None
    request = ReportRequest(results=results, images_dir=images_dir, out=out, manifest=manifest,
                            read_timeout_s=decode_timeout)
    if meta_csv is not None:
        # The images the report itself lists.
        discovery = discover_images(images_dir, run_outputs(request), stall_s=decode_timeout)
        table = read_patients(meta_csv, images=discovery.images, stall_s=decode_timeout)
        jobs = plan_jobs(discovery.images, table, manifest.metadata)
        meta = metadata_as_read(jobs, manifest.metadata)
        codes = metadata_codes(jobs)  # compared with the journal's: today's CSV may differ
        patients = {job.image: job.patient_id for job in jobs}
    # The page's writes are watched (screening.output_watch): a report folder on a share that stops
    # answering ends the command with one line, where a write blocked in the kernel would hang it.
    watch = OutputWatch(Path(out).parent, write_stall_s(decode_timeout),
                        advice="the report was not written: run the same command again once the drive answers")
    with watch:
        stats = build_report(replace(request, patients=patients, meta=meta, meta_codes=codes, watch=watch))
    missing = f"; {stats.missing} images of the folder have no result" if stats.missing else ""
    click.echo(f"Report: {stats.out} ({stats.rows} rows, {stats.pictures_made} thumbnails made{missing})")
