"""A file of the night's output nested thousands of brackets deep (a garbled share, a prank) is
damaged input with its usual message, never a crash: Python's JSON reader raises RecursionError
for it, which is not the ValueError every reader expected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from screening.engines.record import RECORD_NAME, load_record
from screening.errors import BundleError
from screening.journal import JournalHeader, _read_owner
from screening.journal_lines import BadLine, Damage, outcome_lines, read_outcome
from screening.report.build import _summary
from screening.report.views import VIEWS_FILE, read_view_records
from screening.results import summary_path

DEEP = "[" * 100_000 + "]" * 100_000
CLASSES = ("mel", "nv")


def test_a_journal_line_nested_deep_is_a_bad_line():
    with pytest.raises(BadLine, match="not JSON"):
        read_outcome(f'{{"image": {DEEP}}}'.encode(), CLASSES)


def test_a_journal_with_a_line_nested_deep_reads_it_as_damaged_and_goes_on():
    good = json.dumps({"image": "a.jpg"})
    data = f'{{"format": "x"}}\n{{"image": {DEEP}}}\n{DEEP}\n{good}\n'.encode()
    items = list(outcome_lines(data, CLASSES))
    assert [number for number, _ in items] == [2, 3, 4]
    assert all(isinstance(item, Damage) and item.image is None for _, item in items[:2])


def test_a_journal_header_nested_deep_is_not_a_journal_header():
    assert JournalHeader.from_json(DEEP) is None


def test_a_lock_file_nested_deep_names_no_holder(tmp_path: Path):
    lock = tmp_path / "results.csv.lock"
    lock.write_text("[" * 4096)  # all a holder's 4,096 bytes that are read
    fd = os.open(lock, os.O_RDONLY)
    try:
        assert _read_owner(fd) is None
    finally:
        os.close(fd)


def test_a_run_summary_nested_deep_is_read_as_no_summary(tmp_path: Path):
    results = tmp_path / "results.csv"
    summary_path(results).write_text(DEEP)
    assert _summary(results) == {}


def test_a_report_views_line_nested_deep_is_skipped(tmp_path: Path):
    (tmp_path / VIEWS_FILE).write_text(DEEP + "\n")
    assert read_view_records(tmp_path) == []


def test_an_engine_build_record_nested_deep_is_a_malformed_record(tmp_path: Path):
    (tmp_path / RECORD_NAME).write_text(DEEP)
    with pytest.raises(BundleError, match="malformed"):
        load_record(tmp_path)
