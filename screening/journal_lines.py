"""One journal line back into an Outcome, checked against the bundle before it is trusted.

A journal line is reused as a result row without screening the image again, so a line that
does not fit this bundle (another class count, a prediction that is not one of its classes,
a probability that is not a number in 0..1, a field of the wrong type) must never reach the
CSV: it is dropped with a reason and the image is screened again. A misaligned CSV is then
impossible whatever the journal holds (an edit by hand, a disk error, another tool's file).
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from typing import Any

from .results import ERROR, OK, Outcome

_OUTCOME_FIELDS = frozenset(f.name for f in fields(Outcome))


class BadLine(ValueError):
    """A journal line that cannot be reused; ``str()`` says why, for the warning."""


def _text(data: dict, key: str, *, empty: bool = True) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or (not empty and not value):
        raise BadLine(f"{key} is not {'a' if empty else 'a non-empty'} text")
    return value


# Rounded probabilities can sum to a hair over 1 (7 classes x 5e-7), and so can the risk.
_SLACK = 1e-5


def _fraction(data: dict, key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0 + _SLACK:
        raise BadLine(f"{key} {value!r} is not a number between 0 and 1")
    return float(value)


def _absent(data: dict, key: str, empty: Any) -> None:
    if data.get(key, empty) not in (empty, None):
        raise BadLine(f"an error row has a {key}")


def read_outcome(line: bytes, classes: tuple[str, ...]) -> Outcome:
    """The outcome on one journal line, checked against the bundle's ``classes``.

    Raises:
        BadLine: the line is not JSON, not an outcome, or does not fit the bundle; the message
            says which field.
    """
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadLine(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise BadLine("not a JSON object")
    unknown = sorted(set(data) - _OUTCOME_FIELDS)
    if unknown:
        raise BadLine(f"unknown field {unknown[0]!r}")
    image = _text(data, "image", empty=False)
    _text(data, "fingerprint", empty=False)
    warnings = data.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise BadLine("warnings is not a list of texts")
    for key in ("screened_at", "error", "prediction"):
        _text(data, key)
    if "retry" in data and not isinstance(data["retry"], bool):
        raise BadLine("retry is not true or false")
    status = data.get("status")
    if status == OK:
        probabilities = data.get("probabilities")
        if not isinstance(probabilities, list) or len(probabilities) != len(classes):
            count = len(probabilities) if isinstance(probabilities, list) else "no"
            raise BadLine(f"{count} probabilities for the bundle's {len(classes)} classes")
        values = [_fraction({"probability": p}, "probability") for p in probabilities]
        for key in ("risk", "confidence", "lesion_area"):
            _fraction(data, key)
        if data.get("prediction") not in classes:
            raise BadLine(f"prediction {data.get('prediction')!r} is not one of the bundle's classes")
        if data.get("error"):
            raise BadLine("an ok row has an error")
        data["probabilities"] = tuple(values)
    elif status == ERROR:
        _text(data, "error", empty=False)
        _absent(data, "probabilities", [])
        for key in ("risk", "confidence", "lesion_area"):
            _absent(data, key, None)
        _absent(data, "prediction", "")
        data["probabilities"] = ()
    else:
        raise BadLine(f"status {status!r} is neither {OK!r} nor {ERROR!r}")
    data["warnings"] = tuple(warnings)
    data["image"] = image
    return Outcome(**data)
