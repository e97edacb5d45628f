"""`screen folder --operating-point`: the flag column, the referral count, and unknown names."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from folder_runner import run_folder as run
from screening.manifest import load_manifest, save_manifest


def with_points(tiny_bundle: Path, dest: Path, thresholds: dict[str, float]) -> Path:
    """A copy of the tiny bundle whose manifest carries operating points at the given thresholds."""
    shutil.copytree(tiny_bundle, dest)
    points = [{"name": name, "target_sensitivity": int(name[4:]) / 100, "threshold": t, "sensitivity": 0.95,
               "specificity": 0.5, "n_malignant": 40, "n_benign": 60, "fitted_on": "test"}
              for name, t in thresholds.items()]
    save_manifest(replace(load_manifest(dest), operating_points=points), dest)
    return dest


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def test_flag_follows_the_named_point_and_the_summary_counts_referrals(tmp_path, make_folder, tiny_bundle):
    images, meta = make_folder(8)
    (images / "broken.png").write_bytes(b"not an image")
    bundle = with_points(tiny_bundle, tmp_path / "bundle", {"sens90": 0.5, "sens95": 0.0})
    out = tmp_path / "results.csv"
    result = run(images, meta, out, bundle, "--operating-point", "sens90")
    assert result.exit_code == 0, result.output
    table = rows(out)
    ok = [r for r in table if r["status"] == "ok"]
    assert all(r["flag"] == ("refer" if float(r["risk"]) >= 0.5 else "routine") for r in ok)
    assert [r["flag"] for r in table if r["status"] == "error"] == [""]
    referred = sum(r["flag"] == "refer" for r in ok)
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert summary["referrals"] == referred and summary["operating_point"]["name"] == "sens90"
    assert f"Referred {referred} of 8 at operating point sens90 (risk >= 0.5000" in result.output
    # Without --operating-point the bundle's default (the most sensitive, threshold 0) refers everyone.
    assert run(images, meta, out, bundle, "--resume").exit_code == 0
    assert {r["flag"] for r in rows(out) if r["status"] == "ok"} == {"refer"}


def test_unknown_operating_point_lists_the_valid_names(tmp_path, make_folder, tiny_bundle):
    images, meta = make_folder(2)
    bundle = with_points(tiny_bundle, tmp_path / "bundle", {"sens90": 0.5, "sens95": 0.2})
    result = run(images, meta, tmp_path / "r.csv", bundle, "--operating-point", "sens99")
    assert result.exit_code == 2
    assert result.output.strip() == "Error: unknown operating point 'sens99'; this bundle has: sens90, sens95"
    assert not (tmp_path / "r.csv").exists()


def test_bundle_without_points_refuses_a_named_point(tmp_path, make_folder, tiny_bundle):
    images, meta = make_folder(2)
    result = run(images, meta, tmp_path / "r.csv", tiny_bundle, "--operating-point", "sens95")
    assert result.exit_code == 2
    assert "this bundle has no operating points" in result.output
