"""Quality gates for export: `--require malignant_auc>=0.90 --require dice>=0.85`.

A gate names a figure of the evaluation the bundle would carry (``malignant_auc``, ``macro_auc``,
``balanced_accuracy``, ``ece_after``..., or ``dice``/``iou`` of the segmentation) and a bound.
Export refuses, naming every failed gate and the measured value, before anything is written.
"""

from __future__ import annotations

import operator
import re
from typing import Any

OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_GATE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*([0-9.eE+-]+)\s*$")


class GateError(ValueError):
    """A gate cannot be read, or the bundle does not pass it."""


def parse_gate(text: str) -> tuple[str, str, float]:
    match = _GATE.match(text)
    if not match:
        raise GateError(f"--require {text!r}: expected FIGURE>=NUMBER (or <=, >, <), e.g. malignant_auc>=0.90")
    name, op, value = match.groups()
    try:
        return name, op, float(value)
    except ValueError as exc:
        raise GateError(f"--require {text!r}: {value!r} is not a number") from exc


def figure(evaluation: dict[str, Any], name: str) -> float | None:
    """A headline figure, looked up at the top level, then in ``segmentation``."""
    for place in (evaluation, evaluation.get("segmentation") or {}):
        value = place.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def check_gates(gates: list[str], evaluation: dict[str, Any]) -> list[str]:
    """What the evaluation passed, as text; raises GateError listing every failure.

    Raises:
        GateError: a gate is unreadable, names a figure the evaluation lacks, or fails.
    """
    passed, failed = [], []
    for text in gates:
        name, op, bound = parse_gate(text)
        value = figure(evaluation, name)
        if value is None:
            failed.append(f"{name} was not measured (run `python -m training evaluate` first)")
        elif OPERATORS[op](value, bound):
            passed.append(f"{name} {value:.4f} {op} {bound:g}")
        else:
            failed.append(f"{name} is {value:.4f}, required {op} {bound:g}")
    if failed:
        raise GateError("quality gate failed: " + "; ".join(failed))
    return passed
