"""Probability calibration: expected calibration error and temperature scaling of the logits.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T > 0 fitted on held-out
data by minimising the negative log-likelihood. It changes confidences, never the arg-max, so
accuracy is untouched. The fitted T goes into the bundle manifest and screening applies it with
``screening.preprocess.softmax``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from screening.preprocess import softmax
from screening.validation.temperature import golden_section_minimum

DEFAULT_BINS = 15
# Search range of T; outside it a model is broken, not miscalibrated.
TEMPERATURE_BOUNDS = (0.05, 20.0)


@dataclass(frozen=True)
class ReliabilityBins:
    """Top-1 confidence against accuracy in equal-width confidence bins."""

    edges: np.ndarray  # (bins + 1,) bin edges on [0, 1]; bin i holds edges[i] < confidence <= edges[i + 1]
    confidence: np.ndarray  # (bins,) mean top-1 confidence of the samples in each bin, NaN if empty
    accuracy: np.ndarray  # (bins,) fraction of those samples predicted correctly, NaN if empty
    counts: np.ndarray  # (bins,) samples per bin


def _check(scores: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"expected (N, classes) scores and N labels, got {scores.shape} and {labels.shape}")
    if len(labels) == 0:
        raise ValueError("no samples to calibrate on")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must be class indices in 0..{scores.shape[1] - 1}")
    return scores, labels


def reliability_bins(probs: np.ndarray, labels: Sequence[int], n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Bin samples by top-1 confidence and measure each bin's accuracy.

    Args:
        probs: (N, C) class probabilities.
        labels: (N,) true class indices.
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        The per-bin statistics.
    """
    probs, labels = _check(probs, labels)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins, so a confidence of exactly 1.0 lands in the last bin.
    index = np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / counts
        mean_acc = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins) / counts
    return ReliabilityBins(edges=edges, confidence=mean_conf, accuracy=mean_acc, counts=counts)


def expected_calibration_error(probs: np.ndarray, labels: Sequence[int], n_bins: int = DEFAULT_BINS) -> float:
    """ECE: the sample-weighted mean gap |accuracy - confidence| over equal-width confidence bins.

    Args:
        probs: (N, C) class probabilities.
        labels: (N,) true class indices.
        n_bins: number of equal-width bins on top-1 confidence (15 as in Guo et al.).

    Returns:
        ECE in [0, 1]; 0 is perfectly calibrated.
    """
    bins = reliability_bins(probs, labels, n_bins)
    filled = bins.counts > 0
    gaps = np.abs(bins.accuracy[filled] - bins.confidence[filled])
    return float(np.sum(gaps * bins.counts[filled]) / bins.counts.sum())


def negative_log_likelihood(logits: np.ndarray, labels: Sequence[int], temperature: float = 1.0) -> float:
    """Mean cross-entropy of ``softmax(logits / temperature)`` against the labels."""
    logits, labels = _check(logits, labels)
    z = logits / temperature
    z_max = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - z_max).sum(axis=1)) + z_max[:, 0]
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: Sequence[int],
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS, tolerance: float = 1e-5) -> float:
    """The temperature T that minimises the NLL of ``softmax(logits / T)`` on held-out data.

    The NLL is convex in 1/T, hence unimodal in log T, so a golden-section search over log T
    finds the minimum without gradients or scipy.

    Args:
        logits: (N, C) raw classifier outputs on a validation set (never the training set).
        labels: (N,) true class indices.
        bounds: (lowest, highest) temperature searched; the result is clipped to it.
        tolerance: width in log T at which the search stops.

    Returns:
        T > 1 when the model was over-confident, T < 1 when under-confident.
    """
    logits, labels = _check(logits, labels)
    best = golden_section_minimum(lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
                                  float(np.log(bounds[0])), float(np.log(bounds[1])), tolerance)
    return float(np.exp(best))


def calibration_report(logits: np.ndarray, labels: Sequence[int], temperature: float,
                       n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """ECE and NLL before and after scaling by ``temperature``, JSON-ready.

    Args:
        logits: (N, C) raw classifier outputs.
        labels: (N,) true class indices.
        temperature: the fitted T.
        n_bins: ECE bins.

    Returns:
        ``temperature``, ``ece_before``, ``ece_after``, ``nll_before``, ``nll_after``, ``n_bins``.
    """
    return {
        "temperature": float(temperature),
        "ece_before": expected_calibration_error(softmax(logits), labels, n_bins),
        "ece_after": expected_calibration_error(softmax(logits, temperature), labels, n_bins),
        "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
        "n_bins": int(n_bins),
    }
