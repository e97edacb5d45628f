"""Evaluation figures written as PNG files: ROC curves, confusion matrices, reliability diagrams.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot, so nothing needs a
display and no global figure state leaks between calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from screening.preprocess import risk_score

from .calibration import DEFAULT_BINS, expected_calibration_error, reliability_bins
from .metrics import binary_auc

DPI = 120


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=DPI)
    return path


def _roc_line(axes, positive: np.ndarray, score: np.ndarray, label: str, **style) -> None:
    auc = binary_auc(positive, score)
    if auc is None:
        # Keep the class in the legend so a reader sees it was not forgotten.
        axes.plot([], [], label=f"{label}: AUC undefined (no cases)", **style)
        return
    fpr, tpr, _ = roc_curve(positive, score)
    axes.plot(fpr, tpr, label=f"{label}: AUC {auc:.3f}", **style)


def plot_roc_curves(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str],
                    malignant_indices: Sequence[int], path: Path) -> Path:
    """One-vs-rest ROC curve of every class, plus malignant vs benign by risk score.

    Args:
        y_true: (N,) true class indices.
        probs: (N, C) class probabilities.
        class_names: C class codes, used in the legend.
        malignant_indices: classes summed into the risk score.
        path: PNG file to write (parent folders are created).

    Returns:
        ``path``.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    figure = Figure(figsize=(6, 5.5))
    axes = figure.add_subplot()
    for index, name in enumerate(class_names):
        _roc_line(axes, y_true == index, probs[:, index], name, linewidth=1.2)
    _roc_line(axes, np.isin(y_true, list(malignant_indices)), risk_score(probs, malignant_indices),
              "malignant vs benign", color="black", linewidth=2.2)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
             title=f"ROC curves (n = {len(y_true)})")
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return _save(figure, path)


def _matrix_panel(axes, values: np.ndarray, class_names: Sequence[str], title: str, text: Sequence[str]) -> None:
    axes.imshow(values, cmap="Blues", vmin=0, vmax=max(float(values.max()), 1e-9))
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=list(class_names))
    axes.set_yticks(ticks, labels=list(class_names))
    axes.set(xlabel="predicted", ylabel="true", title=title)
    threshold = values.max() / 2
    for (row, col), label in zip(np.ndindex(values.shape), text):
        axes.text(col, row, label, ha="center", va="center", fontsize="small",
                  color="white" if values[row, col] > threshold else "black")


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Confusion matrix twice, side by side: raw counts, and rows normalised to recall.

    Args:
        matrix: (C, C) counts, rows true classes, columns predicted.
        class_names: C class codes for the axes.
        path: PNG file to write.

    Returns:
        ``path``.
    """
    matrix = np.asarray(matrix)
    support = matrix.sum(axis=1, keepdims=True)
    # A class with no true cases has an empty row: show zeros rather than 0/0.
    normalised = np.divide(matrix, support, out=np.zeros(matrix.shape), where=support > 0)
    size = 2.0 + 0.6 * len(class_names)
    figure = Figure(figsize=(2 * size + 1, size))
    counts_axes, norm_axes = figure.subplots(1, 2)
    _matrix_panel(counts_axes, matrix.astype(np.float64), class_names, "counts",
                  [str(int(v)) for v in matrix.ravel()])
    _matrix_panel(norm_axes, normalised, class_names, "row-normalised (recall)",
                  [f"{v:.2f}" for v in normalised.ravel()])
    figure.tight_layout()
    return _save(figure, path)


def _reliability_panel(axes, probs: np.ndarray, labels: np.ndarray, n_bins: int, title: str) -> None:
    bins = reliability_bins(probs, labels, n_bins)
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = 1.0 / n_bins
    filled = bins.counts > 0
    axes.bar(centres[filled], bins.accuracy[filled], width=width, edgecolor="black", linewidth=0.5,
             color="tab:blue", label="accuracy")
    accuracy, confidence = bins.accuracy[filled], bins.confidence[filled]
    # The gap spans accuracy..confidence whichever is higher; hatching keeps it readable over the bar.
    axes.bar(centres[filled], np.abs(confidence - accuracy), bottom=np.minimum(confidence, accuracy),
             width=width, facecolor=(0.84, 0.15, 0.16, 0.3), edgecolor="tab:red", hatch="//",
             linewidth=0.5, label="gap to mean confidence")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ece = expected_calibration_error(probs, labels, n_bins)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="top-1 confidence", ylabel="accuracy",
             title=f"{title}\nECE {ece:.3f}")
    axes.legend(loc="upper left", fontsize="small")


def plot_reliability(probs_before: np.ndarray, probs_after: np.ndarray, labels: Sequence[int], path: Path,
                     n_bins: int = DEFAULT_BINS, temperature: float | None = None) -> Path:
    """Reliability diagrams before and after calibration, side by side, each with its ECE.

    Args:
        probs_before: (N, C) probabilities of the uncalibrated model, e.g. ``softmax(logits)``.
        probs_after: (N, C) calibrated probabilities, e.g. ``softmax(logits, temperature)``.
        labels: (N,) true class indices.
        path: PNG file to write.
        n_bins: equal-width confidence bins.
        temperature: the fitted T, shown in the title when given.

    Returns:
        ``path``.
    """
    labels = np.asarray(labels)
    figure = Figure(figsize=(10, 4.8))
    before, after = figure.subplots(1, 2)
    _reliability_panel(before, np.asarray(probs_before), labels, n_bins, "before calibration")
    title = "after calibration" if temperature is None else f"after temperature scaling (T = {temperature:.2f})"
    _reliability_panel(after, np.asarray(probs_after), labels, n_bins, title)
    figure.tight_layout()
    return _save(figure, path)
