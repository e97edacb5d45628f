"""Tests for bench/pipeline_efficiency.py: screen folder runs against the models alone, on a tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pipeline_efficiency
from pipeline_efficiency import dataset_spec, steady_rates


def test_dataset_spec_reads_an_optional_count() -> None:
    assert dataset_spec("../shared/data/isic_fullres:300") == (Path("../shared/data/isic_fullres"), 300)
    assert dataset_spec("../shared/data/ham10000_dev") == (Path("../shared/data/ham10000_dev"), 0)
    assert dataset_spec("C:data") == (Path("C:data"), 0)  # not a count: part of the path


def test_steady_rate_takes_the_fixed_cost_out() -> None:
    # Runs of 100 and 10 images with a 2 s fixed cost at 10 images/s: 12 s and 3 s.
    full = [{"images": 100, "elapsed_s": 12.0}, {"images": 100, "elapsed_s": 12.0}]
    small = [{"images": 10, "elapsed_s": 3.0}, {"images": 10, "elapsed_s": 13.0}]
    assert steady_rates(full, small) == [10.0]  # a pair whose small run took longer is dropped


def test_efficiency_is_the_screen_rate_over_the_model_rate(tiny_bundle: Path, tiny_dataset: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.json"
    code = pipeline_efficiency.main(["--bundle", str(tiny_bundle), "--dataset", f"{tiny_dataset}:12",
                                     "--batch-sizes", "4", "--workers", "0", "1", "--ort-variant", "runtime",
                                     "no-spin", "--repeats", "1", "--min-seconds", "0", "--out", str(out)])
    assert code == 0
    header = capsys.readouterr().out.splitlines()[1]
    assert [c.strip() for c in header.split("|")[1:-1]] == [
        "images", "batch", "workers", "ORT", "screen folder", "steady", "models only", "efficiency",
        "steady eff."]
    report = json.loads(out.read_text())
    settings = [(e["workers"], e["ort_variant"]) for e in report["results"]]
    assert settings == [(None, "runtime"), (None, "no-spin"), (1, "runtime"), (1, "no-spin")]
    for entry in report["results"][1:]:
        assert entry["runs"][0]["status"] == {"ok": 12, "error": 0}
    entry = report["results"][0]
    assert entry["images"] == 12 and entry["batch"] == 4
    assert entry["runs"][0]["status"] == {"ok": 12, "error": 0}
    assert entry["small_runs"][0]["images"] == 8  # two batches
    assert entry["runs"][0]["backend"].startswith("onnxruntime")
    model = entry["model_images_per_s"]["median"]
    assert model > 0
    assert entry["efficiency"] == pytest.approx(entry["pipeline_images_per_s"]["median"] / model)
    if entry["steady_images_per_s"]["runs"]:
        assert entry["steady_efficiency"] == pytest.approx(entry["steady_images_per_s"]["median"] / model)
