"""Figures of one evaluation, numpy only, computed for many case weightings at once.

A bootstrap resample is the original cases each counted 0, 1, 2... times, so every figure here
takes a weight matrix ``w`` of shape (R, N): R weightings (R = 1 and all ones for the figure
itself, R = 1000 for the resamples) of the N cases, and returns R values. The figure and its
interval therefore come from the same code, and a thousand resamples cost a few matrix
products rather than a thousand sorts.

A value is NaN when the cases of that weighting cannot support it ("n too small"): an AUC needs
MIN_CASES cases on each side, a sensitivity MIN_CASES malignant cases, and so on. A figure
computed from three melanomas would be a number nobody should read.

Conventions follow scikit-learn (tested against it): AUC is the Mann-Whitney statistic with
ties counted half; balanced accuracy is the mean recall over the classes present in the truth;
ECE uses 15 equal-width right-closed bins on the top-1 confidence (as training.calibration).
"""

from __future__ import annotations

import numpy as np

# Fewest cases on each side of a binary figure (positives and negatives) for it to be reported.
MIN_CASES = 5
ECE_BINS = 15
TOO_SMALL = "n too small"


def _divide(num: np.ndarray, den: np.ndarray, defined: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, num / np.where(den == 0, 1, den), np.nan)


def auc(positive: np.ndarray, score: np.ndarray, w: np.ndarray, min_cases: int = MIN_CASES) -> np.ndarray:
    """ROC AUC of ``score`` separating positives from negatives, per weighting.

    Args:
        positive: (N,) bool truth.
        score: (N,) the score ranking the cases.
        w: (R, N) case weights (counts).

    Returns:
        (R,) AUCs; NaN where fewer than ``min_cases`` positives or negatives carry weight.
    """
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(score, kind="mergesort")
    s, pos = np.asarray(score, dtype=np.float64)[order], positive[order]
    ws = w[:, order]
    neg_w = ws * ~pos
    # For each case: negative weight strictly below its score, and negative weight tied with it.
    starts = np.concatenate([[True], s[1:] != s[:-1]])
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    cum = np.cumsum(neg_w, axis=1)
    before = np.concatenate([np.zeros((len(w), 1)), cum], axis=1)  # before[:, k] = sum of neg_w[:, :k]
    ends = np.concatenate([first[1:], [len(s)]])
    below = before[:, first][:, group]
    tied = (before[:, ends] - before[:, first])[:, group]
    pos_w = ws * pos
    n_pos, n_neg = pos_w.sum(axis=1), neg_w.sum(axis=1)
    u = (pos_w * (below + 0.5 * tied)).sum(axis=1)
    return _divide(u, n_pos * n_neg, (n_pos >= min_cases) & (n_neg >= min_cases))


def accuracy(truth: np.ndarray, predicted: np.ndarray, w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1)
    return _divide(w @ (truth == predicted).astype(np.float64), total, total > 0)


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray, w: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean recall over the classes present (with weight) in each weighting's truth."""
    onehot = (truth[:, None] == np.arange(n_classes)).astype(np.float64)  # (N, C)
    support = w @ onehot
    hits = w @ (onehot * (truth == predicted)[:, None])
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / np.where(present, support, 1), 0.0)
    count = present.sum(axis=1)
    return _divide(recall.sum(axis=1), count, count > 0)


def sensitivity(malignant: np.ndarray, flagged: np.ndarray, w: np.ndarray, min_cases: int = MIN_CASES) -> np.ndarray:
    """Fraction of malignant cases flagged, per weighting."""
    n = w @ malignant.astype(np.float64)
    return _divide(w @ (malignant & flagged).astype(np.float64), n, n >= min_cases)


def specificity(malignant: np.ndarray, flagged: np.ndarray, w: np.ndarray, min_cases: int = MIN_CASES) -> np.ndarray:
    """Fraction of benign cases not flagged, per weighting."""
    benign = ~malignant
    n = w @ benign.astype(np.float64)
    return _divide(w @ (benign & ~flagged).astype(np.float64), n, n >= min_cases)


def _bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins, so a confidence of exactly 1.0 lands in the last bin.
    return np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, n_bins - 1)


def ece(probs: np.ndarray, truth: np.ndarray, w: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Expected calibration error per weighting: weighted mean |accuracy - confidence| over bins."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == truth).astype(np.float64)
    onehot = (_bins(confidence, n_bins)[:, None] == np.arange(n_bins)).astype(np.float64)  # (N, B)
    gap = np.abs(w @ (onehot * correct[:, None]) - w @ (onehot * confidence[:, None])).sum(axis=1)
    total = w.sum(axis=1)
    return _divide(gap, total, total > 0)


def reliability(probs: np.ndarray, truth: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, list]:
    """Per confidence bin: edges, count, mean confidence and accuracy (None for empty bins)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == truth
    index = _bins(confidence, n_bins)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / counts
        mean_acc = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins) / counts
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(), "counts": counts.tolist(),
            "confidence": [None if c == 0 else float(v) for c, v in zip(counts, mean_conf)],
            "accuracy": [None if c == 0 else float(v) for c, v in zip(counts, mean_acc)]}


def confusion(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts, rows true class, columns predicted."""
    return np.bincount(truth * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def roc_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    distinct = np.flatnonzero(np.diff(score)) if len(score) > 1 else np.array([], dtype=int)
    cut = np.concatenate([distinct, [len(score) - 1]]).astype(int)
    tp = np.cumsum(positive)[cut]
    fp = (cut + 1) - tp
    n_pos, n_neg = max(int(positive.sum()), 1), max(len(positive) - int(positive.sum()), 1)
    return np.concatenate([[0.0], fp / n_neg]), np.concatenate([[0.0], tp / n_pos])
