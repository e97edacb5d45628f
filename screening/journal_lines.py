"""One journal line back into an Outcome, checked against the bundle before it is trusted.

A journal line is reused as a result row without screening the image again, so a line that
does not fit this bundle (another class count, a prediction that is not one of its classes,
a probability that is not a number in 0..1, a field of the wrong type) must never reach the
CSV: it is dropped with a reason and the image is screened again. A misaligned CSV is then
impossible whatever the journal holds (an edit by hand, a disk error, another tool's file).

Readers of a whole journal (validation, the report) go through :func:`outcome_lines`, which
numbers its lines and says which image a damaged line was for, when that can still be read.

Each line carries a checksum of its content (:func:`outcome_line` writes it): a line changed since
(a network share flipping bytes, an editor saving a half-edited file) that is still JSON, and whose
numbers still agree, would otherwise be reused unnoticed, say with another lesion area, warning,
benign probability or image name. The scheme, named ``sha256-16`` in the journal header's
``line_checksum`` field: the first 16 hex digits of the sha256 of the line's other fields as JSON
with sorted keys, compact separators and ASCII escapes (``json.dumps(fields, sort_keys=True,
separators=(",", ":"), ensure_ascii=True)``), in a ``checksum`` field written last. It is computed
over the parsed values, not the bytes, so it does not depend on key order or spacing, only on
what a reader would take from the line. A line that has a checksum must match it; one without is
refused where its header promises checksums, and read as before in a journal of an earlier
version (no ``line_checksum`` in its header).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .results import ERROR, OK, Outcome

_OUTCOME_FIELDS = frozenset(f.name for f in fields(Outcome))

# The checksum scheme a journal header names (JournalHeader.line_checksum), and the line's field.
LINE_CHECKSUM = "sha256-16"
CHECKSUM = "checksum"


# Built once: json.dumps given any option builds a new encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
_LINE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_FIELD_ORDER = tuple(f.name for f in fields(Outcome))  # the image first


def content_checksum(line_fields: dict) -> str:
    """The ``sha256-16`` checksum of a line's fields (its checksum field left out)."""
    return hashlib.sha256(_CANONICAL.encode(line_fields).encode("ascii")).hexdigest()[:16]


def outcome_line(outcome: Outcome) -> str:
    """The journal line of ``outcome``: its JSON (the image first, as a torn line's reader expects)
    with its checksum last. The same JSON as ``Outcome.to_json`` but for the checksum."""
    # Not dataclasses.asdict: its deep copy of every field costs more than the checksum
    # (docs/performance.md).
    data = {name: getattr(outcome, name) for name in _FIELD_ORDER}
    data[CHECKSUM] = content_checksum(data)
    return _LINE.encode(data)


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


def read_outcome(line: bytes, classes: tuple[str, ...], malignant: Sequence[int] | None = None, *,
                 checksummed: bool = False) -> Outcome:
    """The outcome on one journal line, checked against the bundle's ``classes``.

    With ``malignant`` (the bundle's malignant class indices), an ok line's numbers must also
    agree with each other as screening wrote them (:func:`_check_agreement`): what ``--resume``
    reuses without screening again. A line's checksum, when it has one, must match its content;
    with ``checksummed`` (its journal's header promises checksums) it must have one.

    Raises:
        BadLine: the line is not JSON, not an outcome, or does not fit the bundle; the message
            says which field.
    """
    try:
        data = json.loads(line.decode("utf-8"))
    # RecursionError: a line nested thousands of brackets deep (garbled), not a ValueError.
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadLine(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise BadLine("not a JSON object")
    claimed = data.pop(CHECKSUM, None)
    # Of the fields as read, before any is converted below (an int probability becomes a float).
    expected = content_checksum(data) if claimed is not None else None
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
        if malignant is not None:
            _check_agreement(data, values, classes, malignant)
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
    # Last, so that a line the checks above refuse says what is wrong with its numbers.
    _check_checksum(claimed, expected, checksummed)
    data["warnings"] = tuple(warnings)
    data["image"] = image
    return Outcome(**data)


# Risk against the sum of the malignant probabilities: the same rounded numbers summed in the same
# order give the same float, so only a changed digit is further off than this.
_SUM_TOLERANCE = 1e-9


def _check_agreement(data: dict, probabilities: list[float], classes: tuple[str, ...],
                     malignant: Sequence[int]) -> None:
    """An ok line's risk is the sum of its malignant probabilities and its prediction and
    confidence are its most likely class, as pipeline.postprocess writes them; a line changed
    since (a disk error, an edit by hand) that still reads as JSON keeps its fingerprint, so
    this is what keeps a changed risk out of the worklist."""
    summed = sum(probabilities[index] for index in malignant)
    if abs(data["risk"] - summed) > _SUM_TOLERANCE:
        raise BadLine(f"risk {data['risk']!r} is not the sum of the malignant probabilities ({summed!r})")
    best = max(range(len(probabilities)), key=probabilities.__getitem__)  # the first of equals, as numpy's argmax
    if data["prediction"] != classes[best] or data["confidence"] != probabilities[best]:
        raise BadLine(f"prediction {data['prediction']!r} ({data['confidence']!r}) is not the most likely "
                      f"class {classes[best]!r} ({probabilities[best]!r})")


def _check_checksum(claimed: Any, expected: str | None, checksummed: bool) -> None:
    """A line's checksum matches its content; where its journal promises checksums, it has one."""
    if claimed is None:
        if checksummed:
            raise BadLine("no checksum, though its journal's header says every line has one")
    elif claimed != expected:
        raise BadLine(f"checksum {claimed!r} does not match the line (changed since it was written)")


# What a torn line is, in the user's words: the next run with --resume drops it (screening.journal)
# and screens its image again, so there is nothing to repair by hand.
TORN = "the run stopped while writing it; rerun with --resume"


@dataclass(frozen=True)
class Damage:
    """A journal line that was left out: why, and the image it was for (None when unreadable)."""

    reason: str
    image: str | None
    # The file's last line, cut off before its newline: what a run stopped mid-write leaves,
    # not a finished line damaged since (by hand, by a disk, by another tool).
    torn: bool = False

    def said(self) -> str:
        """What is wrong with the line, as a warning says it: ``is torn (...)`` or ``is damaged (why)``."""
        return f"is torn ({TORN})" if self.torn else f"is damaged ({self.reason})"


# outcome_line writes the image first (as Outcome.to_json did): a line torn after it still names its image.
_IMAGE_FIRST = re.compile(r'\s*\{\s*"image"\s*:\s*')


def _image_named(line: bytes) -> str | None:
    """The image a damaged line was for, where its text still says (whole JSON, or a torn line
    whose image was written before the tear); None otherwise."""
    text = line.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
        image = data.get("image") if isinstance(data, dict) else None
    except (ValueError, RecursionError):
        start = _IMAGE_FIRST.match(text)
        try:
            image = json.JSONDecoder().raw_decode(text, start.end())[0] if start else None
        except (ValueError, RecursionError):
            image = None
    return image if isinstance(image, str) and image else None


def damaged_lines_note(path: Path, lines: list[tuple[int, str | None, Damage]], consequence: str,
                       name: Callable[[str], str] = str) -> str:
    """One line naming a journal's damaged or torn lines (number, image or None, damage) and what
    follows from them, as validation warns and the report notes; ``name`` shows an image's name."""
    def one(number: int, image: str | None, damage: Damage) -> str:
        return f"line {number}{f' ({name(image)})' if image else ''} {damage.said()}"

    if len(lines) == 1:
        return f"{path} {one(*lines[0])}: {consequence}"
    shown = "; ".join(one(*line) for line in lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
    kind = "damaged or torn" if any(damage.torn for _, _, damage in lines) else "damaged"
    return f"{path} has {len(lines)} {kind} lines ({shown}): {consequence}"


def header_line(data: bytes) -> bytes:
    """A journal's first line (its header), for ``JournalHeader.from_json``."""
    return data.split(b"\n", 1)[0]


def outcome_lines(data: bytes, classes: tuple[str, ...], malignant: Sequence[int] | None = None, *,
                  checksummed: bool = False) -> Iterator[tuple[int, Outcome | Damage]]:
    """Each line of a journal after its header, numbered as an editor numbers it (the header is
    line 1): the checked outcome (``read_outcome``, with ``malignant`` its numbers' agreement too,
    with ``checksummed`` a checksum on every line), or the damage that kept it out.

    Lines run to a newline; a last line without one is checked like the others and, when it does
    not read, is torn (``Damage.torn``): a run stopped while writing it, which ``--resume`` mends,
    unlike a damaged line.
    A damaged line names its image where it can: a later line of an image replaces its earlier
    one, so a reader must know that an image's latest line is damaged rather than fall back, unawares,
    to an older result of a file that has since changed.
    """
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the file ends with a newline: there is no line after it
    unfinished = len(lines) if not data.endswith(b"\n") else None  # the number of a last line cut short
    for number, line in enumerate(lines[1:], start=2):
        try:
            yield number, read_outcome(line, classes, malignant, checksummed=checksummed)
        except BadLine as reason:
            yield number, Damage(str(reason), _image_named(line), torn=number == unfinished)
