"""Prepare -> train segmenter -> train classifier -> evaluate -> export -> screen, on sample_data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from screening.cli import cli
from screening.manifest import load_manifest

from ..conftest import SAMPLE_DATA


def test_every_stage_leaves_its_files_and_provenance(trained_tiny):
    out = trained_tiny.out
    for stage in ("segmenter", "classifier"):
        assert (out / stage / "best.pt").is_file() and (out / stage / "last.pt").is_file()
        assert (out / stage / "config.yaml").is_file()
        prov = json.loads((out / stage / "provenance.json").read_text())
        assert prov["data_index_sha256"] and prov["git_commit"]
    assert len(list((out / "masks").glob("*.png"))) == 72  # one cached predicted mask per image
    for name in ("evaluation.json", "predictions.csv", "roc.png", "confusion_matrix.png", "reliability.png"):
        assert (out / "classifier" / "eval" / name).is_file(), name


def test_exported_bundle_is_valid_and_reproduces_pytorch(trained_tiny):
    manifest = load_manifest(trained_tiny.out / "bundle")
    assert manifest.tag == "tiny@0.0.1"
    assert manifest.class_names == ["nv", "bkl", "mel", "bcc"]
    assert [c.name for c in manifest.classes if c.malignant] == ["mel", "bcc"]
    assert manifest.input_size == (64, 64)
    assert "image=test_efficientnet" in manifest.classifier.architecture
    assert "mask=test_efficientnet" in manifest.classifier.architecture  # which mask branch ships
    parity = manifest.training["onnx_parity"]
    assert parity["max_abs_prob_delta"] <= 1e-4 and parity["max_abs_mask_delta"] <= 1e-4
    evaluation = json.loads((trained_tiny.out / "classifier" / "eval" / "evaluation.json").read_text())
    assert manifest.temperature == pytest.approx(evaluation["temperature"])
    assert manifest.training["git_commit"]


def test_screening_with_the_exported_bundle_matches_the_evaluation(trained_tiny, tmp_path):
    """The runtime and the training code agree on the validation images' probabilities."""
    out_csv = tmp_path / "results.csv"
    result = CliRunner().invoke(cli, ["folder", str(SAMPLE_DATA / "images"), "--meta",
                                      str(SAMPLE_DATA / "patients.csv"), "--out", str(out_csv),
                                      "--bundle", str(trained_tiny.out / "bundle"), "--quiet"])
    assert result.exit_code == 0, result.output
    screened = pd.read_csv(out_csv, dtype={"image": str})
    assert len(screened) == 72 and set(screened["status"]) == {"ok"}
    screened["image_id"] = screened["image"].str.removesuffix(".jpg")
    evaluated = pd.read_csv(trained_tiny.out / "classifier" / "eval" / "predictions.csv")
    joined = evaluated.merge(screened, on="image_id", suffixes=("_train", "_screen"))
    assert len(joined) == len(evaluated) == 20
    for name in ("nv", "bkl", "mel", "bcc"):
        # Same pixels, same mask threshold, same temperature: only float noise and the 8-bit
        # quantisation of the cached training masks may differ.
        delta = np.abs(joined[f"p_{name}_train"] - joined[f"p_{name}_screen"]).max()
        assert delta < 5e-3, (name, delta)
