"""Evaluation figures are written as real, non-blank PNG files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from screening.preprocess import softmax
from training.metrics import confusion_matrix
from training.plots import DPI, plot_confusion_matrix, plot_reliability, plot_roc_curves

CLASSES = ["nv", "bkl", "mel", "bcc"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path, size_inches: tuple[float, float]) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000, f"{path.name} is only {len(data)} bytes"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (round(size_inches[1] * DPI), round(size_inches[0] * DPI))
    assert image.std() > 10, "figure is blank"


def _sample(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    logits = rng.normal(size=(n, 4)) + 2.5 * np.eye(4)[y]
    return y, logits


def test_roc_curves_png(tmp_path):
    y, logits = _sample()
    path = plot_roc_curves(y, softmax(logits), CLASSES, [2, 3], tmp_path / "figures" / "roc.png")
    assert path == tmp_path / "figures" / "roc.png"
    _assert_png(path, (6, 5.5))


def test_roc_curves_with_a_class_missing_from_the_truth(tmp_path):
    y, logits = _sample()
    keep = y != 3
    path = plot_roc_curves(y[keep], softmax(logits[keep]), CLASSES, [2, 3], tmp_path / "roc.png")
    _assert_png(path, (6, 5.5))


def test_confusion_matrix_png_with_an_empty_row(tmp_path):
    matrix = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 4)  # bcc never occurs
    path = plot_confusion_matrix(matrix, CLASSES, tmp_path / "confusion.png")
    size = 2.0 + 0.6 * len(CLASSES)
    _assert_png(path, (2 * size + 1, size))


def test_reliability_png(tmp_path):
    y, logits = _sample(n=200)
    path = plot_reliability(softmax(3.0 * logits), softmax(logits), y, tmp_path / "reliability.png", temperature=3.0)
    _assert_png(path, (10, 4.8))
    # Without a temperature the figure is still drawn (other calibration methods have no T).
    _assert_png(plot_reliability(softmax(3.0 * logits), softmax(logits), y, tmp_path / "plain.png"), (10, 4.8))
