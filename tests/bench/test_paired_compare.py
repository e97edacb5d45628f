"""Tests for bench/paired_compare.py: two bundles scored under the same bootstrap resamples."""

from __future__ import annotations

import numpy as np
import pytest

import paired_compare
from screening.validation import metrics


def auc_of(scores: np.ndarray, truth: np.ndarray):
    return lambda w: {"malignant_auc": metrics.auc(truth, scores, w)}


def test_a_bundle_against_itself_differs_by_exactly_nothing_on_every_resample():
    rng = np.random.default_rng(0)
    truth = rng.uniform(size=300) < 0.3
    scores = truth + rng.normal(0, 1, 300)
    figures = paired_compare.paired(auc_of(scores, truth), auc_of(scores, truth), [f"L{i // 2}" for i in range(300)], n=200)
    entry = figures["malignant_auc"]
    assert entry["delta"] == 0 and entry["ci95"] == [0, 0] and entry["candidate_ahead"] == 0


def test_a_candidate_better_on_the_same_lesions_has_a_narrower_paired_interval_than_separate_ones():
    rng = np.random.default_rng(1)
    truth = rng.uniform(size=400) < 0.3
    shared = rng.normal(0, 1, 400)  # what is hard for one is hard for the other
    baseline = truth * 0.8 + shared + rng.normal(0, 0.2, 400)
    candidate = truth * 1.0 + shared + rng.normal(0, 0.2, 400)
    groups = [f"L{i}" for i in range(400)]
    figures = paired_compare.paired(auc_of(baseline, truth), auc_of(candidate, truth), groups, n=300)
    entry = figures["malignant_auc"]
    assert entry["delta"] == pytest.approx(metrics.auc(truth, candidate, np.ones((1, 400)))[0]
                                           - metrics.auc(truth, baseline, np.ones((1, 400)))[0], abs=1e-4)
    low, high = entry["ci95"]
    assert 0 < low < entry["delta"] < high and entry["candidate_ahead"] > 0.97
    # Separately, the two bundles' intervals overlap: only the paired one sees the gain.
    from screening.validation.bootstrap import group_index, intervals
    separate = [intervals(auc_of(s, truth), group_index(groups), n=300)["malignant_auc"] for s in (baseline, candidate)]
    assert separate[0][1] > separate[1][0]
