"""Tests for bench/memory.py: peak RSS per image count, on a tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import memory


def test_peak_rss_per_count_and_growth_from_the_first(tiny_bundle: Path, tiny_dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.json"
    code = memory.main(["--bundle", str(tiny_bundle), "--source", str(tiny_dataset), "--counts", "24", "8",
                        "--batch-size", "4", "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [c.strip() for c in lines[1].split("|")[1:-1]] == ["images", "peak RSS MiB", "vs first", "images/s"]
    assert lines[3].split("|")[1].strip() == "8" and lines[3].split("|")[3].strip() == "+0.0 %"
    report = json.loads(out.read_text())
    assert [entry["images"] for entry in report["results"]] == [8, 24]  # smallest first: the base
    first, second = report["results"]
    assert first["growth_vs_first"] == 0.0
    assert second["growth_vs_first"] == pytest.approx(
        second["peak_rss_mib"]["median"] / first["peak_rss_mib"]["median"] - 1.0)
    assert second["runs"][0]["status"] == {"ok": 24, "error": 0}
    assert 30 < first["peak_rss_mib"]["median"] < 4096


def test_a_missing_data_set_is_a_one_line_error(tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(memory.BenchError, match=r"^no labels.csv in "):
        memory.main(["--bundle", str(tiny_bundle), "--source", str(tmp_path), "--out", str(tmp_path / "r.json")])
