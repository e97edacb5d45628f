"""Tests for bench/fingerprint.py: hashing cost and its share of a real screen folder run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fingerprint


def test_reports_hash_cost_and_its_share_of_a_run(tiny_dataset: Path, tiny_bundle: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.json"
    assert fingerprint.main(["--images", str(tiny_dataset / "images"), "--n", "5", "--repeats", "2",
                             "--bundle", str(tiny_bundle), "--workers", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "hash (read + BLAKE2b-128" in text and "hash share of the run:" in text
    report = json.loads(out.read_text())
    assert report["images"] == 5 and report["run"]["screened"] == 5
    assert 0 < report["hash"]["ms_per_image"] and 0 < report["hash_share_of_run"] < 1


def test_a_missing_folder_is_one_error_line(tmp_path: Path) -> None:
    with pytest.raises(fingerprint.BenchError, match="not found"):
        fingerprint.main(["--images", str(tmp_path / "nope"), "--skip-run", "--out", str(tmp_path / "r.json")])
