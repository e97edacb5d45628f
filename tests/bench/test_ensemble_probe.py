"""Tests for bench/ensemble_probe.py: the mean of two bundles' results, image by image."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import ensemble_probe


def results(images: list[str], p_mel: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"image": images, "p_mel": p_mel, "p_nv": [1 - p for p in p_mel], "risk": p_mel,
                         "status": "ok"}).set_index("image")


def test_the_average_matches_images_by_name_not_by_row_order():
    first = results(["a.jpg", "b.jpg"], [0.2, 0.8])
    second = results(["b.jpg", "a.jpg"], [0.4, 0.6])  # ranked differently: another row order
    mean = ensemble_probe.average([first, second])
    assert mean.loc["a.jpg", "p_mel"] == pytest.approx(0.4) and mean.loc["b.jpg", "p_mel"] == pytest.approx(0.6)
    assert mean.loc["a.jpg", "risk"] == pytest.approx(0.4) and mean.loc["a.jpg", "p_nv"] == pytest.approx(0.6)
    assert mean.loc["a.jpg", "status"] == "ok"


def test_members_that_screened_different_images_are_refused():
    with pytest.raises(SystemExit, match="did not screen the same images"):
        ensemble_probe.average([results(["a.jpg"], [0.2]), results(["c.jpg"], [0.3])])


def test_a_member_with_an_error_row_is_refused():
    broken = results(["a.jpg", "b.jpg"], [0.2, 0.8])
    broken.loc["b.jpg", "status"] = "error"
    with pytest.raises(SystemExit, match="without an ok result"):
        ensemble_probe.average([results(["a.jpg", "b.jpg"], [0.3, 0.7]), broken])


def test_a_member_is_a_report_folder_and_a_results_name(tmp_path: Path):
    (tmp_path / "report" / "external").mkdir(parents=True)
    results(["a.jpg"], [0.3]).reset_index().to_csv(tmp_path / "report" / "external" / "x@1.csv", index=False,
                                                   encoding="utf-8-sig")
    member = ensemble_probe.read_member(f"{tmp_path / 'report'}/@x@1.csv", "external")
    assert member.loc["a.jpg", "p_mel"] == pytest.approx(0.3)
    with pytest.raises(SystemExit, match="expected REPORT_FOLDER/@RESULTS.csv"):
        ensemble_probe.read_member(str(tmp_path / "report" / "x@1.csv"), "external")
