"""`screen calibrate`: a derived bundle with a temperature and operating points fitted on local cases.

The derived bundle has the parent's ONNX files byte for byte (their sha256s still check), a
version ``<parent version>+local.<name>``, the new temperature and operating points, and under
``derived`` its provenance: the parent, the data, how many cases, when, and the figures before
and after on those same cases (which flatters the "after": evaluate on other cases to know).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle_store import install_bundle
from ..errors import InputError
from ..manifest import Manifest, fields_required, save_manifest
from ..operating_points import TooFewCases, fit_operating_points, malignant_needed
from .bootstrap import DEFAULT_RESAMPLES
from .labels import Labels
from .report import evaluate, join
from .scores import Scores, made_by, tta_of
from .temperature import fit_temperature, lowest_risk, nll, rescale

# Fewest labelled cases to fit a temperature on: below this one odd case moves it a lot.
MIN_CASES = 50
SUMMARY_FIGURES = ("malignant_auc", "macro_auc", "balanced_accuracy", "accuracy", "ece")


@dataclass(frozen=True)
class CalibrationRequest:
    bundle_dir: Path
    out: Path  # the derived bundle's folder
    name: str  # local version label, e.g. "clinic-a" -> 1.1.0+local.clinic.a
    sensitivities: tuple[float, ...]
    labels_path: Path
    force: bool = False
    resamples: int = DEFAULT_RESAMPLES


def local_label(text: str) -> str:
    """A PEP 440 local version label: lower-case letters, digits and dots."""
    label = re.sub(r"[^a-z0-9]+", ".", text.lower()).strip(".")
    if not label:
        raise InputError(f"--name {text!r} has no letter or digit to make a version label from")
    return label


def derived_version(version: str, name: str) -> str:
    """``1.1.0`` or ``1.1.0+local.old`` -> ``1.1.0+local.<name>``."""
    return f"{version.split('+')[0]}+local.{local_label(name)}"


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    figures = report["overall"]["figures"]
    keep = [*SUMMARY_FIGURES, *(k for k in figures if k.startswith(("sensitivity@", "specificity@")))]
    return {name: figures[name] for name in keep}


def calibrate(request: CalibrationRequest, manifest: Manifest, scores: Scores, labels: Labels) -> dict[str, Any]:
    """Fit, check and install the derived bundle; returns its ``derived`` provenance.

    Raises:
        InputError: scores from another bundle, fewer than MIN_CASES matched cases.
        TooFewCases: too few malignant (or no benign) cases for a requested sensitivity.
        BundleExists: the output exists and ``force`` is off.
    """
    if not scores.bundle:
        # Evaluating such a file only measures it; fitting on it would install thresholds
        # computed from another bundle's scores, should it be one, as this bundle's.
        raise InputError(f"{scores.source} does not say which bundle screened it (no bundle column): calibrate "
                         f"needs the results CSV (or journal) that `screen folder` wrote with {manifest.tag}")
    if not made_by(scores, manifest):
        raise InputError(f"the results were screened with {scores.bundle}, not with {manifest.tag}: "
                         f"calibrate the bundle that made them")
    cases, _ = join(scores, labels, manifest)
    n = len(cases.images)
    if n < MIN_CASES:
        raise TooFewCases(f"only {n} screened images have a usable label: at least {MIN_CASES} are needed "
                          f"to fit a temperature")
    needed = max(malignant_needed(s) for s in request.sensitivities)
    if int(cases.malignant.sum()) < needed:
        raise TooFewCases(f"only {int(cases.malignant.sum())} of the {n} labelled cases are malignant: "
                          f"at least {needed} are needed to fit a threshold at "
                          f"{max(request.sensitivities):.0%} sensitivity")
    temperature = fit_temperature(cases.probabilities, cases.truth, manifest.temperature)
    calibrated = rescale(cases.probabilities, manifest.temperature, temperature)
    risk = calibrated[:, manifest.malignant_indices].sum(axis=1)
    # The thresholds are fitted on each malignant case's lowest possible risk: the stored
    # probabilities are rounded, and screening with the new temperature recomputes the risk from
    # the logits. The benign cases' specificity is measured on their nominal risk.
    floor = lowest_risk(cases.probabilities, manifest.malignant_indices, manifest.temperature, temperature)
    risk_for_points = np.where(cases.malignant, np.minimum(floor, risk), risk)
    when = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    fitted_on = f"{n} local cases ({request.labels_path.name}, {when[:10]})"
    points = fit_operating_points(risk_for_points, cases.malignant, request.sensitivities, fitted_on=fitted_on)
    version = derived_version(manifest.version, request.name)
    # The child screens with the TTA its thresholds were fitted under (results of `--tta flip`
    # give a bundle whose `tta` is flip). source=None: it is a new file, identified by what
    # save_manifest will write.
    child = replace(manifest, version=version, created=when, temperature=temperature, operating_points=points,
                    default_operating_point=max(points, key=lambda p: p["target_sensitivity"])["name"],
                    tta=tta_of(scores, manifest), source=None, as_loaded=None, folder=None)
    child = replace(child, requires=sorted(set(child.requires) | set(fields_required(child))))
    before, _ = evaluate(scores, labels, manifest, request.resamples)
    after, _ = evaluate(replace(scores, probabilities=rescale(scores.probabilities, manifest.temperature,
                                                              temperature)),
                        labels, child, request.resamples)
    screened_with = replace(manifest, tta=child.tta)
    derived = {
        # The identities the parent's results carry (with the TTA they were screened with), so that
        # they can be evaluated as the derived bundle's (temperature.align): the one screen writes
        # now, and the one screen wrote before 2026-11-30 (results from then still name it so).
        "from": manifest.tag, "from_identity": screened_with.identity,
        "from_legacy_identity": screened_with.legacy_identity,
        "from_temperature": manifest.temperature, "kind": "local recalibration",
        "when": when, "labels": str(request.labels_path), "results": str(scores.source),
        "scores_precision": scores.precision, "cases": n, "malignant": int(cases.malignant.sum()),
        "per_class": after["cases"]["per_class"], "temperature": temperature,
        "nll_before": nll(cases.probabilities, cases.truth), "nll_after": nll(calibrated, cases.truth),
        "before": _summary(before), "after": _summary(after),
        "note": "before/after are measured on the cases the temperature and thresholds were fitted on, "
                "which flatters 'after'; evaluate on other cases to know how it transfers",
    }
    child = replace(child, derived=derived)

    def build(folder: Path) -> None:
        for spec in (manifest.segmenter, manifest.classifier):
            shutil.copy2(request.bundle_dir / spec.file, folder / spec.file)
        save_manifest(child, folder)

    install_bundle(build, request.out, child.tag, force=request.force)
    return derived


def format_calibration(derived: dict[str, Any], tag: str, out: Path) -> str:
    """The lines printed after `screen calibrate`."""
    def cell(entry: dict[str, Any]) -> str:
        if entry["value"] is None:
            return "n too small"
        ci = entry["ci95"]
        return f"{entry['value']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    lines = [f"Wrote {tag} to {out}: temperature {derived['from_temperature']:.3f} -> {derived['temperature']:.3f}, "
             f"fitted on {derived['cases']} cases ({derived['malignant']} malignant; scores from "
             f"{derived['scores_precision']})",
             f"  NLL {derived['nll_before']:.4f} -> {derived['nll_after']:.4f}"]
    for name in derived["after"]:
        before = derived["before"].get(name)
        lines.append(f"  {name:<22} {cell(before) if before else '-':<24} -> {cell(derived['after'][name])}")
    lines.append("  (on the fitting cases themselves: evaluate on other cases to see how it transfers)")
    return "\n".join(lines)
