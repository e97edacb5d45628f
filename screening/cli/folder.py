"""`screen folder`: screen a folder of images into a CSV ranked by risk."""

from __future__ import annotations

import os
from pathlib import Path

import click

import screening

from ..backends import BACKEND_CHOICES
from .paths import PATH
from .job import JobOptions, job_options, run_check
from ..interrupt import Interrupted, interruptible
from ..errors import BundleError, InputError, OutputError, describe_os_error

BUNDLE_ENV = "SCREEN_BUNDLE"
DEFAULT_BATCH_SIZE = 8

EXIT_CODES_HELP = """\b
Exit codes:
  0  all images screened (error rows are results too)
  1  unexpected internal failure
  2  unusable input: images folder (also one without image files, unless
     --allow-empty), metadata CSV, options, or a journal that needs --resume;
     or a drive that stopped answering (images, metadata, bundle, config,
     log or outputs): once it answers, rerun (--resume keeps what finished)
  3  model bundle missing, malformed or modified, or it failed in the models
     on every image the run screened (NaN outputs, exceptions): the last
     results are left as they were, and --resume retries those images
  4  requested backend unavailable on this machine
  5  output locked by another running screen
  6  screen engines verify: FP16 engines disagree with ONNX Runtime FP32
  130  interrupted by Ctrl-C (143: by SIGTERM); rerun with --resume"""

FOLDER_EPILOG = """\b
Examples:
  screen folder sample_data/images --meta sample_data/patients.csv --out results.csv
  screen folder /data/clinic/2025-01-07 --meta /data/clinic/patients.csv --resume --quiet
  screen folder sample_data/images --meta sample_data/patients.csv --report report.html
  screen folder /shared/archive --meta /shared/archive/patients.csv --ray auto

\b
Files written beside --out (results.csv):
  results.summary.json  counts, top risks, speed, backend, bundle, when, host
  results.history/      a dated copy of each run's summary
  results.csv.journal   finished images; kept so --resume screens only new
                        or changed images
  results.csv.lock      locked by the kernel while a run writes results.csv

""" + EXIT_CODES_HELP


def default_bundle() -> Path:
    """$SCREEN_BUNDLE; else, in a checkout, the repository's ``engines/starter``; else the
    starter bundle installed with the package (``screening/bundled/starter``)."""
    configured = os.environ.get(BUNDLE_ENV)
    if configured:
        return Path(configured)
    checkout = Path(screening.__file__).resolve().parents[1] / "engines" / "starter"
    if (checkout / "manifest.json").is_file():
        return checkout
    from ..bundled import STARTER

    return STARTER


def ray_settings(address: str | None, actors: int | None):
    """``--ray`` and ``--ray-actors`` as the request's RaySettings; None for a run in this process."""
    if address is None:
        if actors is not None:
            raise InputError("--ray-actors needs --ray")
        return None
    from ..distributed.run import RaySettings  # Ray itself is imported only when the run starts

    return RaySettings(address=address, actors=actors)


def resolve_bundle(bundle: Path | None) -> Path:
    """The bundle to use; a missing default bundle is an error that says how to get one."""
    if bundle is not None:
        return bundle
    from ..manifest import within_bundle_stall
    from ..stalled_reads import DEFAULT_STALL_S

    path = default_bundle()
    # $SCREEN_BUNDLE may name a share that stopped answering: looked up within the default limit
    # (the command's --decode-timeout is not at hand here), as load_manifest reads it next.
    if not within_bundle_stall(path, DEFAULT_STALL_S, lambda beat: path.is_dir()):
        if os.environ.get(BUNDLE_ENV):
            raise BundleError(f"no model bundle at {path} (${BUNDLE_ENV}): point ${BUNDLE_ENV} at a "
                              f"bundle folder (manifest.json, segmenter.onnx, classifier.onnx), or "
                              f"pass --bundle PATH")
        raise BundleError(f"no model bundle: the starter bundle is not installed ({path} is "
                          f"missing); reinstall with `pip install lesion-screening` (or `pip "
                          f"install .` in a checkout with engines/starter), pass --bundle PATH, or "
                          f"set ${BUNDLE_ENV}=PATH")
    return path


@click.command(epilog=FOLDER_EPILOG)
@job_options
@click.argument("images_dir", type=PATH)
@click.option("--meta", "meta_csv", required=True, type=PATH,
              help="Patient metadata CSV: one row per image; key column image (or image_id, "
                   "image_name, isic_id); optional patient_id, age, sex, site.")
@click.option("--out", "output", default=Path("results.csv"), show_default=True,
              type=PATH, help="Results CSV, ranked by risk.")
@click.option("--bundle", type=PATH, default=None,
              help=f"Model bundle folder (engines/NAME). Default: ${BUNDLE_ENV}, else the "
                   f"repository's engines/starter.")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
              help="auto uses TensorRT when an engine for this GPU is usable, else ONNX Runtime "
                   "on the CPU; the summary names the backend that ran.")
@click.option("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Images per model call.")
@click.option("--workers", type=int, default=None,
              help="Image decoding threads.  [default: one per CPU]")
@click.option("--resume", is_flag=True,
              help="Reuse the results journal of an earlier (killed or finished) run: only "
                   "images not yet screened, new or changed are screened. Results of another "
                   "bundle, --tta or backend are not reused (see --on-bundle-change); flags are "
                   "always those of this run's --operating-point.")
@click.option("--save-masks", type=PATH, default=None,
              help="Folder for each image's lesion mask PNG (0/255, original size) and a "
                   "contour overlay PNG; the images' relative paths are kept. It may not be inside "
                   "the images folder nor hold it (exit 2).")
@click.option("--report", type=PATH, default=None, metavar="REPORT.html",
              help="Also write a self-contained HTML review report: the ranked worklist with "
                   "thumbnails, lesion outlines and attention maps, per-patient view, errors. Its "
                   "pictures go in REPORT_files/ beside it; open it in any browser (docs/report.md).")
@click.option("--keep-columns", is_flag=True,
              help="Copy the patients CSV's extra columns to the output (off by default, so "
                   "free-text fields are not copied around unasked).")
@click.option("--operating-point", default=None, metavar="NAME",
              help="The bundle's operating point (e.g. sens95: the risk threshold fitted for 95 % "
                   "malignant sensitivity) that sets the flag column, refer or routine.  "
                   "[default: the bundle's default; bundles without operating points leave the "
                   "flag empty]")
@click.option("--tta", type=click.Choice(["none", "flip", "flip4"]), default=None,
              help="Test-time augmentation: also screen each image mirrored (flip: 2 passes; "
                   "flip4: 4) and average; slower, slightly steadier rankings.  [default: the "
                   "bundle's]")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Screen on a Ray cluster (extra [distributed]): --ray alone starts Ray on this "
                   "machine; --ray auto joins the cluster started here with `ray start`; or give "
                   "the head's address. Same CSV, journal and guarantees; this process alone "
                   "writes them. Put it after IMAGES_DIR, or write --ray=ADDRESS.")
@click.option("--ray-actors", type=int, default=None, metavar="N",
              help="With --ray: model-holding actors.  [default: one per GPU of the cluster, "
                   "else one per 2 CPUs]")
@click.option("--decode-timeout", type=float, default=30.0, show_default=True, metavar="SECONDS",
              help="Time limit (above 0, at most 86400: a day) to read one image file, and again to "
                   "decode it: a read stuck on a stalled network drive is abandoned, a decoder stuck "
                   "in a hostile file is stopped, and the image becomes an error row (retried by --resume). Four reads "
                   "stuck at once stop the run (exit 2): the drive is gone. Looking up the folders, "
                   "listing the images, reading the metadata CSV, the bundle and opening --log-file wait "
                   "as long for a silent drive, then stop the run (exit 2). Writes to the output folders "
                   "(lock, journal, results, masks, report) wait as long but at least 10 s, then end "
                   "the run (exit 2): what the journal holds is kept for --resume. A log that stops "
                   "answering stops the log, not the run.")
@click.option("--max-decode-mib", type=int, default=256, show_default=True, metavar="MIB",
              help="Decoder memory limit per image, from its header (width x height x channels "
                   "x bytes per sample, before decoding); larger images become error rows (screened "
                   "again by --resume, e.g. with a higher limit).")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress, notes or summary on stdout; warnings and errors still go "
                   "to stderr.")
def folder(images_dir: Path, meta_csv: Path, output: Path, bundle: Path | None, backend: str,
           batch_size: int, workers: int | None, resume: bool, save_masks: Path | None,
           report: Path | None, keep_columns: bool, operating_point: str | None, tta: str | None, ray_address: str | None, ray_actors: int | None,
           decode_timeout: float, max_decode_mib: int, quiet: bool, job: JobOptions = JobOptions()) -> None:
    """Screen every image in IMAGES_DIR and write a CSV ranked by risk.

    Each image (.jpg .jpeg .png .bmp .tif .tiff, found recursively) is segmented, then
    classified from the image, its lesion mask and its patients.csv row. Every image file
    becomes exactly one row: status ok, or error with the reason (corrupt, truncated, too
    large...). Rank 1 is the highest risk (summed probability of the malignant classes);
    error rows come last. Everything is checked before the first image is screened.

    Not for diagnosis: every result must be reviewed by a qualified clinician.
    """
    # Imported here so that `screen --help` does not load OpenCV, pandas and the models.
    from ..progress import Reporter
    from ..results import format_summary
    from ..session import FolderRequest, screen_folder

    request = FolderRequest(
        on_bundle_change=job.on_bundle_change, columns=job.columns, allow_empty=job.allow_empty,
        decode_timeout_s=decode_timeout, max_decode_mib=max_decode_mib,
        images_dir=images_dir, meta_csv=meta_csv, output=output,
        # --check reports a missing bundle in its own lines (exit 3) instead of stopping here.
        bundle_dir=bundle if bundle is not None else default_bundle() if job.check else resolve_bundle(bundle),
        backend=backend, batch_size=batch_size, workers=workers, resume=resume,
        save_masks=save_masks, report=report, keep_columns=keep_columns, operating_point=operating_point, tta=tta,
        ray=ray_settings(ray_address, ray_actors))
    if job.check:
        from ..check import PlannedRun

        # The very request the night would run: --check fails where it would, with its exit code.
        return run_check(images_dir, meta_csv, request.bundle_dir, job, PlannedRun.of(request))
    with interruptible():
        try:
            summary = screen_folder(request, Reporter(quiet=quiet, log=job.log))
        except Interrupted as stop:
            click.echo(f"Interrupted ({stop}): finished images are kept in the journal; rerun the "
                       f"same command with --resume to continue", err=True)
            raise click.exceptions.Exit(stop.exit_code) from None
        except OSError as error:  # the output side: disk full, folder removed or made read-only
            raise OutputError(f"cannot write the results ({describe_os_error(error)})") from None
    if not quiet:
        click.echo(format_summary(summary))
    if job.log is not None:
        job.log.write(format_summary(summary))
