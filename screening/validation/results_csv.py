"""The results CSV of `screen folder` read back, cell by cell, for local validation.

What comes back is what screening wrote, or a one-line refusal that names the file and line.
A spreadsheet may have saved the file with semicolons and decimal commas (read as such) or
retyped a probability; a copy may be cut short mid-row; two runs' files may be pasted together.
Each of those would otherwise become a wrong figure, a crash, or a case silently counted as a
screening error.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..results import DECIMALS, ERROR, OK, csv_delimiter, decode_problem, original_text

# Each probability is rounded to DECIMALS: a row's sum may miss 1 by half a step per class.
_HALF_STEP = 0.5 * 10.0 ** -DECIMALS
_AS_WRITTEN = "use the CSV as `screen folder` wrote it, or its journal"


@dataclass(frozen=True)
class ResultsLine:
    """One image's row of a results CSV."""

    line: int  # line number in the file (the header is line 1)
    image: str
    ok: bool  # status ok (else error: no probabilities)
    probabilities: tuple[float, ...]  # in the order of the classes asked for; empty on error rows
    patient_id: str
    bundle: str


def read_results_csv(path: Path, classes: list[str], tag: str) -> list[ResultsLine]:
    """Every row of a results CSV, with the probabilities of ``classes`` checked.

    Args:
        path: the results CSV (comma-separated as written, or semicolons and decimal commas as a
            spreadsheet in many locales saves it).
        classes: class names whose ``p_<name>`` columns are read, in this order.
        tag: the bundle's name@version, for the message when columns are missing.

    Raises:
        InputError: unreadable, not a results CSV, a row cut short, an image listed twice, a
            status other than ok/error, or a probability that is not a number in 0..1 or a row
            whose probabilities do not sum to 1.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read results {path}: {decode_problem(exc)}") from exc
    except OSError as exc:
        raise InputError(f"cannot read results {path}: {exc}") from exc
    # A spreadsheet that writes decimal commas separates cells with semicolons.
    semicolons = csv_delimiter(text.split("\n", 1)[0], ("image", "status")) == ";"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";" if semicolons else ",")
    header = next(reader, [])
    if "image" not in header or "status" not in header:
        raise InputError(f"{path} is not a `screen folder` results CSV (no image/status columns)")
    missing = [f"p_{c}" for c in classes if f"p_{c}" not in header]
    if missing:
        raise InputError(f"{path} lacks the columns {', '.join(missing)} of bundle {tag}'s classes")
    rows: list[ResultsLine] = []
    seen: dict[str, int] = {}
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, or a spreadsheet's empty row
        where = f"{path} line {reader.line_num}"
        if len(cells) != len(header):
            raise InputError(f"{where} has {len(cells)} cells, its header {len(header)}: the file is cut "
                             f"short or was edited; {_AS_WRITTEN}")
        row = dict(zip(header, cells))
        image = original_text(row["image"])
        if image in seen:
            raise InputError(f"{path} lists {image} twice (lines {seen[image]}, {reader.line_num}): results of "
                             f"two runs pasted together? {_AS_WRITTEN}")
        seen[image] = reader.line_num
        if row["status"] not in (OK, ERROR):
            raise InputError(f"{where}: status {row['status']!r} is neither {OK} nor {ERROR}; {_AS_WRITTEN}")
        ok = row["status"] == OK
        probabilities = _probabilities(row, classes, where, semicolons) if ok else ()
        rows.append(ResultsLine(reader.line_num, image, ok, probabilities, original_text(row.get("patient_id") or ""),
                                original_text(row.get("bundle") or "")))
    return rows


def _probabilities(row: dict[str, str], classes: list[str], where: str, decimal_comma: bool) -> tuple[float, ...]:
    values = []
    for name in classes:
        column, cell = f"p_{name}", row[f"p_{name}"]
        try:
            value = float(cell.replace(",", ".") if decimal_comma else cell)
        except ValueError:
            raise InputError(f"{where}: {column} {cell!r} is not a number; {_AS_WRITTEN}") from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise InputError(f"{where}: {column} {cell!r} is not a probability (0 to 1); {_AS_WRITTEN}")
        values.append(value)
    total = math.fsum(values)
    if abs(total - 1.0) > len(values) * _HALF_STEP + 1e-9:
        columns = ", ".join(f"p_{name}" for name in classes)
        raise InputError(f"{where}: {columns} sum to {total:.6f}, not 1: a probability was edited; {_AS_WRITTEN}")
    return tuple(values)
