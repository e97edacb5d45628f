"""Expected calibration error and temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from screening.preprocess import softmax
from training.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)


def _calibrated_sample(n: int = 3000, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated by construction, so the best T is 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, classes))
    probs = softmax(logits)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, labels


def test_ece_of_a_hand_computed_case():
    # Two samples at confidence 0.9 with one right (gap 0.4), two at 0.6 both right (gap 0.4).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == pytest.approx(0.0)


def test_reliability_bins_are_right_closed_and_count_every_sample():
    probs = np.array([[1.0, 0.0], [0.6, 0.4], [0.55, 0.45], [0.5, 0.5]])
    bins = reliability_bins(probs, np.array([0, 1, 0, 0]), n_bins=10)
    assert bins.counts.sum() == 4
    assert bins.counts[9] == 1  # confidence exactly 1.0 lands in the last bin
    assert bins.counts[5] == 2  # 0.55 and 0.6 are in (0.5, 0.6]
    assert bins.counts[4] == 1  # 0.5 is in (0.4, 0.5]
    assert bins.accuracy[5] == pytest.approx(0.5)
    assert bins.confidence[5] == pytest.approx(0.575)
    assert np.isnan(bins.accuracy[0])


def test_nll_of_uniform_logits_is_log_of_class_count():
    assert negative_log_likelihood(np.zeros((5, 4)), np.arange(5) % 4) == pytest.approx(np.log(4))
    assert negative_log_likelihood(np.array([[2.0, 0.0]]), [0], temperature=2.0) == pytest.approx(np.log(1 + np.exp(-1)))


def test_over_confident_logits_get_temperature_above_one_and_ece_drops():
    logits, labels = _calibrated_sample()
    over = 3.0 * logits
    temperature = fit_temperature(over, labels)
    assert 2.5 < temperature < 3.5
    ece_before = expected_calibration_error(softmax(over), labels)
    ece_after = expected_calibration_error(softmax(over, temperature), labels)
    assert ece_before > 0.1
    assert ece_after < ece_before / 3
    assert negative_log_likelihood(over, labels, temperature) < negative_log_likelihood(over, labels)
    # Scaling never changes the predicted class.
    assert np.array_equal(softmax(over, temperature).argmax(1), over.argmax(1))


def test_under_confident_logits_get_temperature_below_one():
    logits, labels = _calibrated_sample(seed=1)
    temperature = fit_temperature(0.4 * logits, labels)
    assert 0.3 < temperature < 0.5


def test_calibrated_logits_keep_temperature_near_one():
    logits, labels = _calibrated_sample(seed=2)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.12)


def test_search_stops_at_the_bounds():
    # Every prediction wrong: the NLL keeps falling as T grows, so T hits the upper bound.
    logits = np.array([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(logits, [1, 0], bounds=(0.1, 10.0)) == pytest.approx(10.0, rel=1e-3)


def test_report_lists_before_and_after():
    logits, labels = _calibrated_sample(n=1000, seed=3)
    report = calibration_report(3.0 * logits, labels, temperature=3.0)
    assert set(report) == {"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "n_bins"}
    assert report["ece_after"] < report["ece_before"]
    assert report["nll_after"] < report["nll_before"]
    assert report["n_bins"] == 15


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match=r"^labels must be class indices in 0\.\.1$"):
        fit_temperature(np.zeros((2, 2)), [0, 2])
