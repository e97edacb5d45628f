"""Tests for bench/journal_cost.py: writing and reading back a journal, timed per line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import journal_cost


def test_times_writing_and_reading_a_journal_whose_lines_carry_checksums(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.json"
    assert journal_cost.main(["--lines", "50", "--repeats", "2", "--out", str(out)]) == 0
    assert "50 lines" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["line_checksums"] is True and report["lines"] == 50
    assert set(report["steps"]) == {"write (Journal.compact)", "read for --resume (Journal.open)",
                                    "read for report/evaluate (outcome_lines)"}
    assert all(len(step["passes_s"]) == 2 and step["min_s"] > 0 for step in report["steps"].values())
    assert len(report["per_line_us"]) == 4 and all(micros > 0 for micros in report["per_line_us"].values())
