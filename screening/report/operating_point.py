"""The operating point a report names, and how many decimals a risk needs beside it.

The run's summary JSON records the point behind the CSV's flag column. Without it (a summary
deleted or not copied, a run that did not finish) the report must not guess silently: it names
the bundle's point only when the rows' flags agree with its threshold, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..manifest import Manifest
from ..operating_points import REFER, ROUTINE, flag
from ..results import DECIMALS, ERROR, OK
from .rows import ReportRow, Results

RISK_DECIMALS = 3  # how a risk is shown when that does not contradict its flag
# The CSV prints risks to DECIMALS places, so a row within half a unit of the threshold may have
# been flagged either way from its full-precision risk: it neither confirms nor refutes a point.
ROUNDING = 0.5 * 10.0 ** -DECIMALS


@dataclass(frozen=True)
class PointShown:
    """What the header says about the operating point, and the threshold behind the flags."""

    text: str  # e.g. "sens95 (malignant sensitivity 0.95, refer at risk >= 0.220197)"
    threshold: float | None = None  # None when unknown or there is none


def describe(point: dict[str, Any]) -> str:
    """``sens95 (malignant sensitivity 0.95, refer at risk >= 0.220197)``, with the CSV's decimals."""
    parts = [str(point["name"])]
    if _is_number(point.get("target_sensitivity")):
        parts.append(f"malignant sensitivity {point['target_sensitivity']:g}")
    if _is_number(point.get("threshold")):
        parts.append(f"refer at risk >= {threshold_text(point['threshold'])}")
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


def threshold_text(threshold: float) -> str:
    return f"{threshold:.{DECIMALS}f}"


def point_shown(results: Results, summary: dict[str, Any], manifest: Manifest | None) -> PointShown:
    """The operating point in force for these rows, from the run's summary or, failing it, the bundle."""
    journal = results.source != "results CSV"
    if not journal and "operating_point" in summary:  # the run says which point made the flags
        point = summary["operating_point"]
        if isinstance(point, dict) and point.get("name"):
            return PointShown(describe(point), _threshold(point))
        if isinstance(point, str) and point:
            return PointShown(point)
        return PointShown("none (the run had no operating point)")
    points = manifest.operating_points if manifest is not None else []
    if journal:
        # The journal's rows were flagged with the bundle's default point (rows.read_journal).
        point = manifest.operating_point() if manifest is not None and points else None
        if point is None:
            return PointShown("none (the bundle has no operating points)" if manifest is not None
                              else "unknown (no bundle to read it from)")
        return PointShown(f"{describe(point)}: the bundle's default, used for the flags here "
                          f"(a journal does not record the point the run used)", _threshold(point))
    if not results.has_flag:
        return PointShown("none (the results have no flags)")
    default = manifest.operating_point() if manifest is not None and points else None
    for point in ([default] if default else []) + [p for p in points if p is not default]:
        if _threshold(point) is not None and flags_agree(results, point["threshold"]):
            return PointShown(f"{describe(point)}: from the bundle, as the run's summary is missing "
                              f"(the results' flags agree with it)", _threshold(point))
    return PointShown("unknown: the run's summary is missing" + (
        " and the results' flags fit none of the bundle's operating points" if points else ""))


def flags_agree(results: Results, threshold: float) -> bool:
    """Every flagged ok row is flagged as ``threshold`` would flag its (printed) risk."""
    for row in results.rows:
        if row.status != OK or row.risk is None or row.flag not in ("refer", "routine"):
            continue
        if flag(row.risk, threshold) != row.flag and abs(row.risk - threshold) > ROUNDING:
            return False
    return True


def flag_as_risk(row: ReportRow, threshold: float) -> ReportRow:
    """An ok CSV row whose flag is not what its risk gives at the run's ``threshold`` (beyond the
    printed risk's rounding) becomes an error row saying so: a 0.9 retyped 'routine' would be drawn
    as routine and left out of the 'flagged only' view. Which of the two was retyped cannot be told."""
    if row.status != OK or row.risk is None or row.flag not in (REFER, ROUTINE):
        return row
    expected = flag(row.risk, threshold)
    if expected == row.flag or abs(row.risk - threshold) <= ROUNDING:
        return row
    return ReportRow(rank=None, image=row.image, patient_id=row.patient_id, status=ERROR, warnings=row.warnings,
                     new=row.new, screened_at=row.screened_at, bundle=row.bundle,
                     error=f"flag {row.flag!r} in the results CSV is not what risk {row.risk:.{DECIMALS}f} gives at "
                           f"the run's threshold {threshold_text(threshold)} ({expected}): edited?")


def risk_text(risk: float | None, threshold: float | None) -> str | None:
    """The risk with more than RISK_DECIMALS decimals where fewer would look like the threshold.

    "0.220 · routine" under "refer at risk >= 0.220197" leaves the reader unsure which side the
    risk is on; "0.2200" does not. Decimals are added until the risk and the printed threshold
    differ (rounding keeps order, so the flag then matches what the reader sees), at most the
    CSV's. None: the usual RISK_DECIMALS suffice.
    """
    if risk is None or threshold is None:
        return None
    shown = float(threshold_text(threshold))
    for digits in range(RISK_DECIMALS, DECIMALS + 1):
        if f"{risk:.{digits}f}" != f"{shown:.{digits}f}":
            return None if digits == RISK_DECIMALS else f"{risk:.{digits}f}"
    return f"{risk:.{DECIMALS}f}"


def _threshold(point: dict[str, Any]) -> float | None:
    value = point.get("threshold")
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
