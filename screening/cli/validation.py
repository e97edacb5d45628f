"""`screen evaluate` and `screen calibrate`: measure a bundle on local labelled cases, and adapt it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .folder import resolve_bundle
from .paths import PATH

# = screening.validation.bootstrap.DEFAULT_RESAMPLES (a test checks): not imported, so that
# `screen --help` does not load numpy.
DEFAULT_RESAMPLES = 1000

EVALUATE_EPILOG = """\b
Examples:
  screen evaluate results.csv --labels labels.csv --out eval/
  screen evaluate /data/clinic/images --meta patients.csv --labels labels.csv --out eval/

\b
The labels CSV has an image key column (image, image_id, image_name or isic_id, matched to
images like the patients CSV) and a diagnosis column (diagnosis, dx, label or class): HAM10000
codes, ISIC names ("melanoma", "nevus", "basal cell carcinoma", "seborrheic keratosis",
"actinic keratosis", "squamous cell carcinoma" -> akiec) or the bundle's class labels. Optional
columns patient_id, age, sex, site and source give the breakdowns; patient ids make the
bootstrap resample patients. Unmapped diagnoses are reported and left out, never guessed.

\b
Written into --out: evaluation.json (every figure), roc.png, reliability.png, confusion.png
(and results.csv when IMAGES are screened first)."""

CALIBRATE_EPILOG = """\b
Example:
  screen calibrate --bundle engines/starter --results results.csv --labels labels.csv \\
      --out engines/starter-clinic --sensitivity 0.90 --sensitivity 0.95

\b
The derived bundle keeps the ONNX files, gets version <version>+local.<name>, the temperature
and operating points fitted on these cases, and their provenance (manifest "derived"). Use the
results' journal (results.csv.journal, kept beside the CSV) when it is of the same run, else
the CSV (both hold probabilities to 6 decimals). Refused (exit 2) with fewer than
50 labelled cases or too few malignant ones for a sensitivity (20 for 90 %, 40 for 95 %)."""


@click.command(epilog=EVALUATE_EPILOG)
@click.argument("source", type=PATH)
@click.option("--labels", "labels_csv", required=True, type=PATH,
              help="Labels CSV: image key and diagnosis per image (see below).")
@click.option("--meta", "meta_csv", type=PATH, default=None,
              help="Patients CSV, needed when SOURCE is an images folder to screen first.")
@click.option("--out", "out_dir", default=Path("evaluation"), show_default=True,
              type=PATH, help="Folder for evaluation.json and the PNGs.")
@click.option("--bundle", type=PATH, default=None,
              help="The bundle that made the results (classes, operating points). Default: "
                   "$SCREEN_BUNDLE, else engines/starter.")
@click.option("--bootstrap", "resamples", type=click.IntRange(0, 100000), default=DEFAULT_RESAMPLES,
              show_default=True, help="Bootstrap resamples for the 95 % intervals (0: none).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but warnings and errors.")
def evaluate(source: Path, labels_csv: Path, meta_csv: Path | None, out_dir: Path, bundle: Path | None,
             resamples: int, quiet: bool) -> None:
    """Measure a bundle on labelled local cases: AUCs, accuracy, sensitivity and
    specificity at its operating points, calibration, with 95 % bootstrap intervals,
    overall and by site, sex, age band and source.

    SOURCE is a results CSV of `screen folder` (its journal is read instead when it is
    kept beside it), a results journal, or an images folder, which is screened first
    (then --meta is required).
    """
    from ..errors import InputError
    from ..manifest import load_manifest
    from ..atomic import atomic_write
    from ..validation.figures import write_pngs
    from ..validation.labels import read_labels
    from ..validation.report import evaluate as run_evaluation, format_report
    from ..validation.scores import read_scores
    from ..validation.temperature import align

    bundle_dir = resolve_bundle(bundle)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        source = _screen_first(source, meta_csv, out_dir, bundle_dir, quiet)
    elif meta_csv is not None:
        raise InputError("--meta is only used when SOURCE is an images folder to screen")
    manifest = load_manifest(bundle_dir, verify_files=False)
    scores = align(read_scores(source, manifest), manifest)
    _warn(scores.warnings)
    labels = read_labels(labels_csv, scores.images + scores.error_rows + scores.unusable, manifest)
    _warn(labels.warnings)
    report, cases = run_evaluation(scores, labels, manifest, resamples)
    report["labels"] = str(labels_csv)
    atomic_write(out_dir / "evaluation.json", (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    if report["cases"]["matched"]:
        write_pngs(out_dir, cases, manifest.class_names, report)
    if not quiet:
        click.echo(format_report(report))
        click.echo(f"Written: {out_dir / 'evaluation.json'} and roc.png, reliability.png, confusion.png")


def _warn(messages: list[str]) -> None:
    """Warnings go to stderr, even with --quiet, as `screen folder` prints them."""
    for message in messages:
        click.echo(f"Warning: {message}", err=True)


def _screen_first(images: Path, meta_csv: Path | None, out_dir: Path, bundle_dir: Path, quiet: bool) -> Path:
    from ..errors import InputError
    from ..progress import Reporter
    from ..session import FolderRequest, screen_folder

    if meta_csv is None:
        raise InputError("SOURCE is an images folder: --meta patients.csv is needed to screen it first")
    output = out_dir / "results.csv"
    screen_folder(FolderRequest(images_dir=images, meta_csv=meta_csv, output=output, bundle_dir=bundle_dir,
                                resume=True), Reporter(quiet=quiet))
    return output


class Sensitivity(click.ParamType):
    """A target sensitivity as a fraction strictly between 0 and 1; a percentage says what was meant.

    ``--sensitivity 95`` would otherwise fail only after the results and labels were read, with a
    range error that does not say the option wants 0.95.
    """

    name = "fraction"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        typed = str(value).strip()
        try:
            number = float(typed)
        except ValueError:
            self.fail(f"{typed!r} is not a number (0.95 is 95 % sensitivity)", param, ctx)
        if 1.0 < number < 100.0:
            self.fail(f"{typed} is not a fraction: did you mean {round(number / 100, 6):g}?", param, ctx)
        if not 0.0 < number < 1.0:  # 1.0 would need infinitely many malignant cases: no threshold promises 100 %
            self.fail(f"{typed} must lie strictly between 0 and 1 (0.95 is 95 % sensitivity)", param, ctx)
        return number


@click.command(epilog=CALIBRATE_EPILOG)
@click.option("--bundle", type=PATH, default=None,
              help="The bundle that made the results. Default: $SCREEN_BUNDLE, else engines/starter.")
@click.option("--results", "results", required=True, type=PATH,
              help="Results CSV of `screen folder` on the local cases (or its journal).")
@click.option("--labels", "labels_csv", required=True, type=PATH,
              help="Labels CSV, as for `screen evaluate`.")
@click.option("--out", "out_dir", required=True, type=PATH,
              help="Folder of the derived bundle (must not exist, unless --force).")
@click.option("--name", default=None,
              help="Local version label, e.g. clinic-a -> <version>+local.clinic.a. Default: the --out "
                   "folder's name.")
@click.option("--sensitivity", "sensitivities", type=Sensitivity(), multiple=True, default=(0.90, 0.95),
              show_default=True, help="Target malignant sensitivity of an operating point, as a fraction "
                                      "(0.95 for 95 %); repeatable.")
@click.option("--force", is_flag=True, help="Replace an existing --out bundle (swapped atomically).")
@click.option("--bootstrap", "resamples", type=click.IntRange(0, 100000), default=DEFAULT_RESAMPLES,
              show_default=True, help="Bootstrap resamples for the before/after intervals.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but warnings and errors.")
def calibrate(bundle: Path | None, results: Path, labels_csv: Path, out_dir: Path, name: str | None,
              sensitivities: tuple[float, ...], force: bool, resamples: int, quiet: bool) -> None:
    """Refit a bundle's temperature and operating points on labelled local cases and
    write a derived bundle (same ONNX files) with them and their provenance.

    No GPU and no torch needed: the temperature is fitted on the saved probabilities.
    """
    from ..errors import InputError
    from ..manifest import load_manifest
    from ..validation.calibrate import CalibrationRequest, calibrate as run_calibration, format_calibration
    from ..validation.labels import read_labels
    from ..validation.scores import read_scores

    bundle_dir = resolve_bundle(bundle)
    if out_dir.resolve() == bundle_dir.resolve():
        # --force would swap the parent for its own child: the bundle the derived one names as its
        # origin (and whose results it rescales) would be gone, and every job using it changed.
        raise InputError(f"--out {out_dir} is the bundle being calibrated: write the derived bundle beside "
                         f"it (e.g. {bundle_dir}-local)")
    manifest = load_manifest(bundle_dir)
    scores = read_scores(results, manifest)
    _warn(scores.warnings)
    labels = read_labels(labels_csv, scores.images + scores.error_rows + scores.unusable, manifest)
    _warn(labels.warnings)
    request = CalibrationRequest(bundle_dir=bundle_dir, out=out_dir, name=name or out_dir.resolve().name,
                                 sensitivities=tuple(sorted(set(sensitivities))), labels_path=labels_csv,
                                 force=force, resamples=resamples)
    derived = run_calibration(request, manifest, scores, labels)
    if not quiet:
        tag = load_manifest(out_dir).tag
        click.echo(format_calibration(derived, tag, out_dir))
