"""Operating points: malignant-risk thresholds fitted at a fixed sensitivity, and the flag they give.

An operating point turns the continuous risk into a decision a clinic can act on: an image whose
risk is at or above the threshold is flagged ``refer``, any other ``routine``. The threshold is
fitted on labelled cases (at export, on the validation split; at ``screen calibrate``, on the
clinic's own cases) as the *largest* threshold that still flags at least the target fraction of
the malignant cases (less a margin of RISK_MARGIN for rounding), so that it refers as few benign
cases as that sensitivity allows. The
specificity measured on the same cases travels with it, so a reader of the manifest knows what
the threshold costs where it was fitted (and that elsewhere it may cost more).

numpy only: the runtime and ``screen calibrate`` use it without torch.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import InputError

REFER = "refer"
ROUTINE = "routine"
DEFAULT_SENSITIVITIES = (0.90, 0.95)
# At least this many malignant cases must be allowed to fall below the threshold. With fewer, the
# threshold is simply the lowest-risk malignant case, and one case decides where it lies.
MIN_MISSES = 2
# The threshold sits this far below the risk of the malignant case that defines it. Screening
# recomputes that case's risk from probabilities rounded to 6 decimals (and, for a recalibrated
# bundle, from its own temperature), which moves it by about 1e-6: exactly on the case, half the
# time it would come out routine and the point would miss its own sensitivity. The margin costs
# at most the benign cases within 1e-5 below, and the specificity is measured with it.
RISK_MARGIN = 1e-5
# Keys of one operating point, as written in the manifest.
KEYS = ("name", "target_sensitivity", "threshold", "sensitivity", "specificity", "n_malignant",
        "n_benign", "fitted_on")


class TooFewCases(InputError):
    """There are not enough labelled cases to estimate what was asked."""


def point_name(target: float) -> str:
    """``0.95`` -> ``"sens95"``; ``0.975`` -> ``"sens97.5"``."""
    percent = round(target * 100, 6)
    return f"sens{percent:g}"


def malignant_needed(target: float) -> int:
    """Malignant cases needed to fit a threshold at sensitivity ``target`` (see MIN_MISSES)."""
    if not 0.0 < target < 1.0:  # 1.0 would need infinitely many: no threshold is fitted at 100 %
        raise InputError(f"sensitivity {target} must lie strictly between 0 and 1")
    return math.ceil(round(MIN_MISSES / (1.0 - target), 9))


def fit_operating_points(risk: Sequence[float] | np.ndarray, is_malignant: Sequence[bool] | np.ndarray,
                         sensitivities: Iterable[float] = DEFAULT_SENSITIVITIES,
                         fitted_on: str = "") -> list[dict[str, Any]]:
    """Fit one risk threshold per target sensitivity.

    Args:
        risk: malignant risk per case (summed probability of the malignant classes).
        is_malignant: the truth per case.
        sensitivities: targets strictly between 0 and 1, e.g. (0.90, 0.95).
        fitted_on: where the cases came from, in words (kept in the manifest).

    Returns:
        One dict per target, in the order given, with the keys in KEYS.

    Raises:
        TooFewCases: fewer malignant cases than ``malignant_needed(target)``, or no benign case
            (specificity could not be measured); the message says how many are needed.
        InputError: risks that are not finite, lengths that differ, a target outside (0, 1).
    """
    risk = np.asarray(risk, dtype=np.float64)
    truth = np.asarray(is_malignant, dtype=bool)
    if risk.shape != truth.shape or risk.ndim != 1:
        raise InputError(f"risk and truth must be two lists of the same length, got {risk.shape} "
                         f"and {truth.shape}")
    if not np.all(np.isfinite(risk)):
        raise InputError("risk values must be finite numbers")
    malignant = np.sort(risk[truth])[::-1]  # highest risk first
    benign = risk[~truth]
    points = []
    for target in sensitivities:
        target = float(target)
        if not 0.0 < target < 1.0:
            raise InputError(f"sensitivity {target} must lie strictly between 0 and 1")
        needed = malignant_needed(target)
        if len(malignant) < needed:
            raise TooFewCases(
                f"cannot fit a threshold at {target:.0%} sensitivity from {len(malignant)} malignant "
                f"case{'s' if len(malignant) != 1 else ''}: at least {needed} are needed (so that "
                f"{MIN_MISSES} may fall below the threshold rather than one case deciding it)")
        if len(benign) == 0:
            raise TooFewCases(f"cannot measure the specificity of a {target:.0%} sensitivity threshold: "
                              f"there are no benign cases")
        # The k-th highest malignant risk is the largest threshold flagging at least k of them;
        # the margin keeps that case above it when screening recomputes its risk.
        k = math.ceil(round(target * len(malignant), 9))
        threshold = max(0.0, float(malignant[k - 1]) - RISK_MARGIN)
        points.append({
            "name": point_name(target),
            "target_sensitivity": target,
            "threshold": threshold,
            "sensitivity": float(np.mean(malignant >= threshold)),
            "specificity": float(np.mean(benign < threshold)),
            "n_malignant": int(len(malignant)),
            "n_benign": int(len(benign)),
            "fitted_on": str(fitted_on),
        })
    return points


def flag(risk: float, threshold: float) -> str:
    """``refer`` when the risk is at or above the threshold, else ``routine``."""
    return REFER if risk >= threshold else ROUTINE


def default_point_name(points: Sequence[dict[str, Any]]) -> str | None:
    """The point a bundle uses when none is named: the highest target sensitivity (the safest)."""
    if not points:
        return None
    return max(points, key=lambda p: p["target_sensitivity"])["name"]


def find_point(points: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    """The operating point called ``name``.

    Raises:
        InputError: no such point; the message lists the valid names (or says there are none).
    """
    for point in points:
        if point["name"] == name:
            return point
    if not points:
        raise InputError(f"operating point {name!r}: this bundle has no operating points "
                         f"(fit some with `screen calibrate`)")
    valid = ", ".join(p["name"] for p in points)
    raise InputError(f"unknown operating point {name!r}; this bundle has: {valid}")


def _order_problems(points: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """Points of one fit that contradict each other. Fitted on the same cases (same fitted_on and
    case counts), a higher target sensitivity gets a lower or equal threshold (the k-th highest
    malignant risk, k growing with the target), and one target one threshold: anything else is a
    hand edit, and the default point (the highest target) would refer fewer lesions than promised."""
    found = []
    fits: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, point in points:
        fits.setdefault(repr((point["fitted_on"], point["n_malignant"], point["n_benign"])), []).append((i, point))
    for fit in fits.values():
        for (i, a), (j, b) in combinations(sorted(fit, key=lambda item: item[1]["target_sensitivity"]), 2):
            first, second = f"operating_points[{i}] ({a['name']})", f"operating_points[{j}] ({b['name']})"
            if a["target_sensitivity"] == b["target_sensitivity"] and a["threshold"] != b["threshold"]:
                found.append(f"{first} and {second} both target {point_name(a['target_sensitivity'])[4:]} % "
                             f"sensitivity on the same cases, with different thresholds ({a['threshold']:.6g} "
                             f"and {b['threshold']:.6g})")
            elif a["target_sensitivity"] < b["target_sensitivity"] and b["threshold"] > a["threshold"]:
                found.append(f"{second} targets a higher sensitivity than {first}, fitted on the same cases, "
                             f"with a higher threshold ({b['threshold']:.6g} > {a['threshold']:.6g}): it would "
                             f"refer fewer lesions, not more (thresholds swapped or edited?)")
    return found


def problems(points: Any, default: Any) -> list[str]:
    """What is wrong with a manifest's ``operating_points`` / ``default_operating_point``; [] if nothing.

    Every problem is listed, not just the first, so one look at a manifest shows all of them.
    """
    if points is None:
        return [] if default is None else ["default_operating_point is set but there are no operating_points"]
    if not isinstance(points, list):
        return [f"operating_points must be a list, got {type(points).__name__}"]
    found = []
    names = []
    usable = []  # (index, point) of the points whose own fields are fine
    for i, point in enumerate(points):
        where = f"operating_points[{i}]"
        if not isinstance(point, dict):
            found.append(f"{where} must be an object, got {type(point).__name__}")
            continue
        missing = [k for k in KEYS if k not in point]
        if missing:
            found.append(f"{where} lacks {', '.join(missing)}")
            continue
        before = len(found)
        names.append(point["name"])
        if not isinstance(point["name"], str) or not point["name"]:
            found.append(f"{where}.name must be a non-empty text")
        elif any(ord(ch) < 32 or ord(ch) == 127 for ch in point["name"]):  # printed in one-line messages
            found.append(f"{where}.name {point['name']!r} must be one line of text without control characters")
        for key in ("target_sensitivity", "threshold", "sensitivity", "specificity"):
            value = point[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                found.append(f"{where}.{key} must be a number, got {value!r}")
            elif not 0.0 <= value <= 1.0:
                found.append(f"{where}.{key} {value} must lie between 0 and 1")
        for key in ("n_malignant", "n_benign"):
            if isinstance(point[key], bool) or not isinstance(point[key], int) or point[key] < 0:
                found.append(f"{where}.{key} must be a whole number >= 0, got {point[key]!r}")
        if len(found) == before:
            usable.append((i, point))
    found.extend(_order_problems(usable))
    duplicates = sorted({n for n in names if names.count(n) > 1}, key=str)
    if duplicates:
        found.append(f"operating point names repeat: {', '.join(map(str, duplicates))}")
    if default is not None and default not in names:
        found.append(f"default_operating_point {default!r} is not one of the operating points "
                     f"({', '.join(map(str, names)) or 'none'})")
    return found
