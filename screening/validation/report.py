"""One local evaluation: join scores with labels, compute every figure with its 95 % interval.

The report is a plain dict (written as JSON, printed as a short text): the cases matched and
those that were not (listed, never silently dropped), the overall figures, the same figures per
site, sex, age band and source, and what the figures were computed from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..manifest import Manifest
from ..metadata import MAX_PLAUSIBLE_AGE, MISSING_STRINGS, SEX_ALIASES, UNKNOWN
from . import metrics
from .bootstrap import DEFAULT_RESAMPLES, group_index, intervals
from .labels import Labels
from .scores import Scores

BREAKDOWNS = ("site", "sex", "age_band", "source")
LISTED = 50  # unmatched images listed in the report by name; the rest are counted


@dataclass
class Cases:
    """The matched cases: scores and truth side by side."""

    images: list[str]
    probabilities: np.ndarray  # (N, C)
    truth: np.ndarray  # (N,) class index
    malignant: np.ndarray  # (N,) bool
    risk: np.ndarray  # (N,)
    patient_ids: list[str]
    descriptors: list[dict[str, str]]


def age_band(age: str) -> str:
    """'47' -> '40-49'; under 30 and 80 or over are one band each; unknown stays 'unknown'.

    An age that screening takes as unknown ('NaN', '-5', '200', '45 years') is unknown here too:
    counted under 30 or over 80 it would move cases between bands (and 'NaN' has no band at all).
    """
    try:
        # As screening reads it (metadata.cell_text): '_' is a space there, so '4_5' is no number,
        # where Python's float() would read 45.
        years = float(age.replace("_", " "))
    except ValueError:
        return "unknown"
    if not 0 <= years <= MAX_PLAUSIBLE_AGE:  # NaN is not in range either
        return "unknown"
    if years < 30:
        return "<30"
    if years >= 80:
        return "80+"
    low = int(years // 10 * 10)
    return f"{low}-{low + 9}"


def group_name(text: str, aliases: dict[str, str] | None = None) -> str:
    """A breakdown group as screening reads the cell: 'Lower_Extremity' -> 'lower extremity',
    'F' -> 'female' (``aliases``), 'NaN' or '' -> 'unknown'. Split by spelling, a group's figures
    would silently leave out the cases spelt otherwise."""
    text = " ".join(text.strip().lower().replace("_", " ").split())
    if text in MISSING_STRINGS:
        return UNKNOWN
    return (aliases or {}).get(text, text)


def join(scores: Scores, labels: Labels, manifest: Manifest) -> tuple[Cases, dict[str, Any]]:
    """The cases with both a score and a mapped label, and an account of every case without."""
    keep = [i for i, image in enumerate(scores.images) if image in labels.truth]
    images = [scores.images[i] for i in keep]
    probabilities = scores.probabilities[keep]
    truth = np.array([labels.truth[i] for i in images], dtype=np.int64)
    malignant_classes = manifest.malignant_indices
    descriptors = []
    for image in images:
        d = dict(labels.descriptors.get(image, {}))
        d["age_band"] = age_band(d.get("age", ""))
        d["sex"] = group_name(d.get("sex", ""), SEX_ALIASES)
        d["site"] = group_name(d.get("site", ""))
        d["source"] = re.sub(r"\s+", " ", d.get("source", "").strip().lower()) or "unknown"
        descriptors.append(d)
    patient_ids = [labels.descriptors.get(i, {}).get("patient_id") or scores.patient_ids.get(i, "")
                   for i in images]
    cases = Cases(images=images, probabilities=probabilities, truth=truth,
                  malignant=np.isin(truth, malignant_classes),
                  risk=probabilities[:, malignant_classes].sum(axis=1) if len(images) else np.zeros(0),
                  patient_ids=patient_ids, descriptors=descriptors)
    scored = set(scores.images)
    unmatched = {
        "screened_without_label_row": _listed(labels.no_row),
        "screened_with_empty_diagnosis": _listed(labels.no_label),
        "unmapped_diagnoses": dict(sorted(labels.unmapped.items())),
        "label_rows_without_screened_image": _listed(labels.rows_without_image),
        "screening_errors": _listed([i for i in scores.error_rows]),
        "damaged_journal_lines": _listed(scores.unusable),
        "labelled_but_not_scored": _listed(sorted(set(labels.truth) - scored)),
    }
    return cases, unmatched


def _listed(items: list[str]) -> dict[str, Any]:
    return {"count": len(items), "first": list(items[:LISTED])}


def _figures(cases: Cases, w: np.ndarray, points: list[dict[str, Any]], detailed: bool,
             class_names: list[str]) -> dict[str, np.ndarray]:
    """Every figure for each row of case weights ``w`` (one row of ones: the figures themselves).

    ``detailed`` adds the per-class and macro AUCs and the ECE (overall, not per breakdown group,
    where they would mostly be "n too small").
    """
    probs, truth, malignant, risk = cases.probabilities, cases.truth, cases.malignant, cases.risk
    predicted = probs.argmax(axis=1)
    out = {"malignant_auc": metrics.auc(malignant, risk, w),
           "balanced_accuracy": metrics.balanced_accuracy(truth, predicted, w, len(class_names)),
           "accuracy": metrics.accuracy(truth, predicted, w)}
    for point in points:
        flagged = risk >= point["threshold"]
        out[f"sensitivity@{point['name']}"] = metrics.sensitivity(malignant, flagged, w)
        out[f"specificity@{point['name']}"] = metrics.specificity(malignant, flagged, w)
    if detailed:
        aucs = {f"auc_{name}": metrics.auc(truth == i, probs[:, i], w) for i, name in enumerate(class_names)}
        stacked = np.stack(list(aucs.values()))
        with np.errstate(invalid="ignore"):
            defined = ~np.isnan(stacked)
            out["macro_auc"] = np.where(defined.any(axis=0),
                                        np.nansum(stacked, axis=0) / np.maximum(defined.sum(axis=0), 1), np.nan)
        out["ece"] = metrics.ece(probs, truth, w)
        out.update(aucs)
    return out


def _with_intervals(cases: Cases, index: np.ndarray, points: list[dict[str, Any]], detailed: bool,
                    class_names: list[str], resamples: int) -> dict[str, Any]:
    sub = _subset(cases, index)
    groups = group_index(sub.patient_ids)
    values = _figures(sub, np.ones((1, len(sub.images))), points, detailed, class_names)
    cis = intervals(lambda w: _figures(sub, w, points, detailed, class_names), groups, resamples)
    figures = {}
    for name, value in values.items():
        value = None if np.isnan(value[0]) else float(value[0])
        entry: dict[str, Any] = {"value": value, "ci95": list(cis[name]) if value is not None and cis.get(name)
                                 else None}
        if value is None:
            entry["note"] = metrics.TOO_SMALL
        figures[name] = entry
    return {"n": len(sub.images), "n_malignant": int(sub.malignant.sum()),
            "n_patients": int(groups.max()) + 1 if len(groups) else 0, "figures": figures}


def _subset(cases: Cases, index: np.ndarray) -> Cases:
    return Cases(images=[cases.images[i] for i in index], probabilities=cases.probabilities[index],
                 truth=cases.truth[index], malignant=cases.malignant[index], risk=cases.risk[index],
                 patient_ids=[cases.patient_ids[i] for i in index],
                 descriptors=[cases.descriptors[i] for i in index])


def evaluate(scores: Scores, labels: Labels, manifest: Manifest,
             resamples: int = DEFAULT_RESAMPLES) -> tuple[dict[str, Any], Cases]:
    """The whole report (JSON-ready) and the matched cases (for the figures' PNGs).

    Args:
        scores: the model's probabilities per image.
        labels: the truth per image, mapped onto the bundle's classes.
        manifest: the bundle (classes, malignant classes, operating points).
        resamples: bootstrap resamples for the 95 % intervals (0: no intervals).
    """
    cases, unmatched = join(scores, labels, manifest)
    class_names = manifest.class_names
    points = list(manifest.operating_points or [])  # none: no sensitivity/specificity
    everything = np.arange(len(cases.images))
    overall = _with_intervals(cases, everything, points, True, class_names, resamples)
    predicted = cases.probabilities.argmax(axis=1) if len(cases.images) else np.zeros(0, dtype=np.int64)
    breakdowns: dict[str, dict[str, Any]] = {}
    for key in BREAKDOWNS:
        values = [d[key] for d in cases.descriptors]
        if set(values) <= {"unknown"}:
            continue  # nothing known about this descriptor
        breakdowns[key] = {value: _with_intervals(cases, np.flatnonzero(np.array(values) == value), points,
                                                  False, class_names, resamples)
                           for value in sorted(set(values))}
    grouped = any(cases.patient_ids)
    return {
        "bundle": manifest.tag,
        "scores": {"source": str(scores.source), "bundle": scores.bundle, "precision": scores.precision},
        "statement": manifest.statement,
        "classes": class_names,
        "malignant_classes": [class_names[i] for i in manifest.malignant_indices],
        "operating_points": points,
        "cases": {"matched": len(cases.images), "per_class": {c: int((cases.truth == i).sum())
                                                              for i, c in enumerate(class_names)},
                  "malignant": int(cases.malignant.sum()), **unmatched},
        "intervals": {"method": "percentile bootstrap, 95 %", "resamples": resamples,
                      "resampled_unit": "patient" if grouped else "image",
                      "min_cases": metrics.MIN_CASES},
        "overall": overall,
        "confusion_matrix": metrics.confusion(cases.truth, predicted, len(class_names)).tolist(),
        "reliability": metrics.reliability(cases.probabilities, cases.truth) if len(cases.images) else None,
        "breakdowns": breakdowns,
    }, cases


def _fmt(entry: dict[str, Any]) -> str:
    if entry["value"] is None:
        return metrics.TOO_SMALL
    ci = entry["ci95"]
    return f"{entry['value']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def format_report(report: dict[str, Any]) -> str:
    """The few lines printed after `screen evaluate`."""
    cases = report["cases"]
    overall = report["overall"]
    lines = [f"Evaluated {report['bundle']} on {cases['matched']} labelled images "
             f"({cases['malignant']} malignant, {overall['n_patients']} "
             f"{report['intervals']['resampled_unit']}s); scores from {report['scores']['precision']}"]
    left_out = [(cases["screened_without_label_row"]["count"], "screened images without a label row"),
                (cases["screened_with_empty_diagnosis"]["count"], "with an empty diagnosis"),
                (sum(cases["unmapped_diagnoses"].values()), "with an unmapped diagnosis"),
                (cases["label_rows_without_screened_image"]["count"], "label rows without a screened image"),
                (cases["screening_errors"]["count"], "screening errors"),
                (cases["damaged_journal_lines"]["count"], "with a damaged journal line")]
    if any(n for n, _ in left_out):
        lines.append("  left out: " + "; ".join(f"{n} {what}" for n, what in left_out if n))
    if cases["unmapped_diagnoses"]:
        lines.append("  unmapped diagnoses: " + ", ".join(f"{k!r} ({v})" for k, v in
                                                          cases["unmapped_diagnoses"].items()))
    figures = overall["figures"]
    lines.append("Figure (95 % CI):")
    for name in ("malignant_auc", "macro_auc", "balanced_accuracy", "accuracy", "ece",
                 *(k for k in figures if k.startswith(("sensitivity@", "specificity@")))):
        lines.append(f"  {name:<22} {_fmt(figures[name])}")
    per_class = ", ".join(f"{k[4:]} {_fmt(v).split(' ')[0] if v['value'] is not None else 'n too small'}"
                          for k, v in figures.items() if k.startswith("auc_"))
    lines.append(f"  per-class AUC: {per_class}")
    for key, groups in report["breakdowns"].items():
        cells = [f"{value} {g['figures']['malignant_auc']['value']:.3f} (n={g['n']})"
                 for value, g in groups.items() if g["figures"]["malignant_auc"]["value"] is not None]
        small = sum(1 for g in groups.values() if g["figures"]["malignant_auc"]["value"] is None)
        if small:
            cells.append(f"{small} group{'s' if small != 1 else ''} n too small")
        lines.append(f"  malignant AUC by {key}: " + "; ".join(cells))
    if not report["operating_points"]:
        lines.append("  (this bundle has no operating points: no sensitivity/specificity; "
                     "fit some with `screen calibrate`)")
    lines.append(report["statement"])
    return "\n".join(lines)
