"""Compare results CSVs except the columns that record when (or in which run) a row was screened."""

from __future__ import annotations

import csv
from pathlib import Path

RUN_TIME_COLUMNS = ("screened_at",)


def rows_without(path: Path, columns: tuple[str, ...] = RUN_TIME_COLUMNS) -> list[list[str]]:
    """The CSV's header and rows (BOM and all bytes checked by the caller's other asserts), minus
    ``columns``: two runs at different times are the same results when these are equal."""
    text = Path(path).read_bytes()
    assert text.startswith(b"\xef\xbb\xbf"), "results CSV lost its BOM"
    table = list(csv.reader(text.decode("utf-8-sig").splitlines()))
    keep = [i for i, name in enumerate(table[0]) if name not in columns]
    return [[row[i] for i in keep] for row in table]
