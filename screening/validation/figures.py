"""The evaluation's PNGs (ROC curves, reliability diagram, confusion matrix), drawn with OpenCV.

OpenCV is already a runtime dependency; a plotting library would add tens of megabytes to a
runtime install for three plain charts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..atomic import atomic_write
from . import metrics

SIZE = 520  # plot area, pixels
MARGIN = 60
FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, GREY, WHITE = (0, 0, 0), (190, 190, 190), (255, 255, 255)
# BGR colours for up to 8 curves (colour-blind-friendly Okabe-Ito order).
COLOURS = [(0, 0, 0), (0, 159, 230), (233, 180, 86), (115, 158, 0), (66, 228, 240), (178, 114, 0),
           (0, 94, 213), (167, 121, 204)]


def _canvas(title: str, x_label: str, y_label: str) -> np.ndarray:
    image = np.full((SIZE + 2 * MARGIN, SIZE + 2 * MARGIN + 160, 3), 255, np.uint8)
    cv2.rectangle(image, (MARGIN, MARGIN), (MARGIN + SIZE, MARGIN + SIZE), BLACK, 1)
    for tick in np.linspace(0, 1, 6):
        x, y = _xy(tick, tick)
        cv2.putText(image, f"{tick:.1f}", (x - 12, MARGIN + SIZE + 18), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
        cv2.putText(image, f"{tick:.1f}", (MARGIN - 32, y + 4), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, title, (MARGIN, MARGIN - 20), FONT, 0.55, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, x_label, (MARGIN + SIZE // 2 - 60, MARGIN + SIZE + 42), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, y_label, (4, MARGIN - 4), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    return image


def _xy(x: float, y: float) -> tuple[int, int]:
    return int(round(MARGIN + x * SIZE)), int(round(MARGIN + (1 - y) * SIZE))


def _legend(image: np.ndarray, row: int, colour: tuple[int, int, int], text: str) -> None:
    x, y = MARGIN + SIZE + 12, MARGIN + 12 + 20 * row
    cv2.line(image, (x, y - 4), (x + 18, y - 4), colour, 2, cv2.LINE_AA)
    cv2.putText(image, text, (x + 24, y), FONT, 0.4, BLACK, 1, cv2.LINE_AA)


def roc_png(cases, class_names: list[str], report: dict[str, Any]) -> np.ndarray:
    """Malignant-vs-benign ROC (thick) and one-vs-rest ROC per class with enough cases."""
    image = _canvas("ROC", "1 - specificity", "sensitivity")
    cv2.line(image, _xy(0, 0), _xy(1, 1), GREY, 1, cv2.LINE_AA)
    curves = [("malignant", cases.malignant, cases.risk, report["overall"]["figures"]["malignant_auc"]["value"])]
    curves += [(name, cases.truth == i, cases.probabilities[:, i],
                report["overall"]["figures"][f"auc_{name}"]["value"]) for i, name in enumerate(class_names)]
    row = 0
    for k, (name, positive, score, value) in enumerate(curves):
        if value is None:
            continue
        fpr, tpr = metrics.roc_points(positive, score)
        points = np.array([_xy(x, y) for x, y in zip(fpr, tpr)], np.int32)
        colour = COLOURS[k % len(COLOURS)]
        cv2.polylines(image, [points], False, colour, 3 if k == 0 else 1, cv2.LINE_AA)
        _legend(image, row, colour, f"{name} {value:.3f}")
        row += 1
    for point in report["operating_points"]:
        fig = report["overall"]["figures"]
        sens, spec = fig[f"sensitivity@{point['name']}"]["value"], fig[f"specificity@{point['name']}"]["value"]
        if sens is not None and spec is not None:
            centre = _xy(1 - spec, sens)
            cv2.circle(image, centre, 5, BLACK, -1, cv2.LINE_AA)
            cv2.putText(image, point["name"], (centre[0] + 8, centre[1] + 14), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    return image


def reliability_png(report: dict[str, Any]) -> np.ndarray:
    """Accuracy per top-1 confidence bin against the diagonal; bar width ~ share of cases."""
    ece = report["overall"]["figures"]["ece"]["value"]
    image = _canvas(f"Reliability (ECE {ece:.3f})" if ece is not None else "Reliability", "confidence",
                    "accuracy")
    cv2.line(image, _xy(0, 0), _xy(1, 1), GREY, 1, cv2.LINE_AA)
    bins = report["reliability"]
    total = max(sum(bins["counts"]), 1)
    for low, high, n, acc in zip(bins["edges"][:-1], bins["edges"][1:], bins["counts"], bins["accuracy"]):
        if not n:
            continue
        top_left, bottom_right = _xy(low, acc), _xy(high, 0)
        shade = int(230 - 180 * min(1.0, 5 * n / total))  # darker = more cases
        cv2.rectangle(image, top_left, bottom_right, (shade, shade, 255), -1)
        cv2.rectangle(image, top_left, bottom_right, BLACK, 1)
    return image


def confusion_png(matrix: list[list[int]], class_names: list[str]) -> np.ndarray:
    """Counts, rows true class, columns predicted; shading by the row's share."""
    counts = np.array(matrix)
    n = len(class_names)
    cell = max(40, min(90, 560 // max(n, 1)))
    left, top = 90, 70
    image = np.full((top + n * cell + 40, left + n * cell + 20, 3), 255, np.uint8)
    cv2.putText(image, "Confusion (rows true, columns predicted)", (10, 22), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    for i in range(n):
        cv2.putText(image, class_names[i], (10, top + i * cell + cell // 2 + 5), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
        cv2.putText(image, class_names[i], (left + i * cell + 4, top - 10), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
        for j in range(n):
            shade = int(255 - 200 * share[i, j])
            corner = (left + j * cell, top + i * cell)
            cv2.rectangle(image, corner, (corner[0] + cell, corner[1] + cell), (255, shade, shade), -1)
            cv2.rectangle(image, corner, (corner[0] + cell, corner[1] + cell), GREY, 1)
            colour = WHITE if share[i, j] > 0.6 else BLACK
            cv2.putText(image, str(counts[i, j]), (corner[0] + 6, corner[1] + cell // 2 + 5), FONT, 0.45, colour,
                        1, cv2.LINE_AA)
    return image


def write_pngs(folder: Path, cases, class_names: list[str], report: dict[str, Any]) -> list[Path]:
    """Write roc.png, reliability.png and confusion.png into ``folder``; returns their paths."""
    pngs = {"roc.png": roc_png(cases, class_names, report),
            "reliability.png": reliability_png(report),
            "confusion.png": confusion_png(report["confusion_matrix"], class_names)}
    written = []
    for name, image in pngs.items():
        ok, data = cv2.imencode(".png", image)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {name}")
        atomic_write(folder / name, data.tobytes())
        written.append(folder / name)
    return written
