"""Evaluation metrics of the classifier and the segmenter, reported as JSON-ready dictionaries.

Classification metrics take integer labels ``y_true`` (N,) and class probabilities ``probs``
(N, C); the prediction is the arg-max. The malignant-vs-benign score is the same risk score
screening ranks by (``screening.preprocess.risk_score``). A metric that is undefined on the
given data (an AUC of a class with no positive or no negative case) is ``None`` and is left
out of its macro average, with a note saying so.

Segmentation metrics take binary masks (nonzero = lesion), one pair per image.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from screening.preprocess import risk_score

# ISIC 2018 Task 1: a per-image Jaccard below this counts as a failed segmentation (0).
ISIC_JACCARD_THRESHOLD = 0.65


def _check_classification(y_true: Sequence[int], probs: np.ndarray,
                          n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated (int labels, float64 probabilities); ValueError naming the first problem."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, classes), got shape {probs.shape}")
    if y_true.shape != (probs.shape[0],):
        raise ValueError(f"y_true has shape {y_true.shape} but probs has {probs.shape[0]} rows")
    if len(y_true) == 0:
        raise ValueError("no samples to evaluate")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {y_true.dtype}")
    n_classes = probs.shape[1] if n_classes is None else n_classes
    if probs.shape[1] != n_classes:
        raise ValueError(f"probs has {probs.shape[1]} columns for {n_classes} classes")
    outside = y_true[(y_true < 0) | (y_true >= n_classes)]
    if len(outside):
        raise ValueError(f"y_true holds class index {int(outside[0])}, outside 0..{n_classes - 1}")
    return y_true, probs


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        y_true: true class indices.
        y_pred: predicted class indices.
        n_classes: number of classes C.

    Returns:
        int64 (C, C) matrix; rows are true classes, columns predicted ones.
    """
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Fraction of samples whose prediction equals the truth."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def precision_recall_f1(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from a confusion matrix.

    A ratio with a zero denominator is 0 (a class never predicted has precision 0), except for
    a class that is neither present nor predicted: all three are NaN, since nothing was measured.

    Args:
        matrix: (C, C) confusion matrix, rows true, columns predicted.

    Returns:
        Three float64 arrays of length C.
    """
    tp = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    absent = (support == 0) & (predicted == 0)
    for values in (precision, recall, f1):
        values[absent] = np.nan
    return precision, recall, f1


def balanced_accuracy(matrix: np.ndarray) -> float:
    """Mean recall over the classes present in the truth (rows of the confusion matrix with support)."""
    support = matrix.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def binary_auc(positive: Sequence[bool], score: Sequence[float]) -> float | None:
    """ROC AUC of ``score`` for separating positives from negatives; None without both kinds."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, np.asarray(score, dtype=np.float64)))


def one_vs_rest_auc(y_true: Sequence[int], probs: np.ndarray) -> list[float | None]:
    """Per-class one-vs-rest ROC AUC of each probability column; None where the AUC is undefined.

    Args:
        y_true: (N,) true class indices.
        probs: (N, C) class probabilities.

    Returns:
        C values, None for a class with no positive or no negative case in ``y_true``.
    """
    y_true, probs = _check_classification(y_true, probs)
    return [binary_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1])]


def malignant_auc(y_true: Sequence[int], probs: np.ndarray, malignant_indices: Sequence[int]) -> float | None:
    """ROC AUC of the risk score (summed malignant probabilities) for malignant vs benign truth."""
    y_true, probs = _check_classification(y_true, probs)
    return binary_auc(np.isin(y_true, list(malignant_indices)), risk_score(probs, malignant_indices))


def melanoma_auc(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str]) -> float | None:
    """ROC AUC of p(mel) for melanoma vs everything else; None without a ``mel`` class or cases."""
    if "mel" not in class_names:
        return None
    y_true, probs = _check_classification(y_true, probs, len(class_names))
    index = list(class_names).index("mel")
    return binary_auc(y_true == index, probs[:, index])


def _number(value: float) -> float | None:
    """A JSON-ready float; NaN (undefined) becomes None."""
    return None if value is None or np.isnan(value) else float(value)


def _mean_defined(values: Iterable[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def classification_report(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str],
                          malignant_indices: Sequence[int]) -> dict[str, Any]:
    """Every classification metric of one evaluation, JSON-ready.

    Args:
        y_true: (N,) true class indices.
        probs: (N, C) class probabilities (after temperature scaling, if any).
        class_names: C class codes, e.g. ["nv", "bkl", "mel", "bcc"].
        malignant_indices: indices of the classes counted in the risk score.

    Returns:
        ``n_samples``, ``accuracy``, ``balanced_accuracy``, ``macro_precision``,
        ``macro_recall``, ``macro_f1``, ``macro_auc``, ``malignant_auc``, ``melanoma_auc``,
        ``per_class`` (class -> support, precision, recall, f1, auc), ``confusion_matrix``
        (rows true, columns predicted), ``classes``, ``malignant_classes`` and ``notes``
        (why a value is None or left out of a macro average). Undefined values are None.
    """
    class_names = list(class_names)
    y_true, probs = _check_classification(y_true, probs, len(class_names))
    if not all(0 <= i < len(class_names) for i in malignant_indices):
        raise ValueError(f"malignant_indices {list(malignant_indices)} must lie in 0..{len(class_names) - 1}")
    matrix = confusion_matrix(y_true, probs.argmax(axis=1), len(class_names))
    precision, recall, f1 = precision_recall_f1(matrix)
    aucs = one_vs_rest_auc(y_true, probs)
    notes = []
    for name, support, auc in zip(class_names, matrix.sum(axis=1), aucs):
        if auc is None:
            reason = "no cases" if support == 0 else "no other classes"
            notes.append(f"AUC of class '{name}' is undefined ({reason} in y_true); left out of macro_auc")
    absent = [name for name, p in zip(class_names, precision) if np.isnan(p)]
    if absent:
        notes.append(f"classes neither present nor predicted, left out of the macro averages: {', '.join(absent)}")
    malignant = malignant_auc(y_true, probs, malignant_indices)
    if malignant is None:
        notes.append("malignant_auc is undefined: y_true holds only malignant or only benign cases")
    melanoma = melanoma_auc(y_true, probs, class_names)
    if melanoma is None:
        notes.append("melanoma_auc is undefined: " + ("no 'mel' class" if "mel" not in class_names
                                                      else "y_true holds only melanoma or no melanoma"))
    return {
        "n_samples": int(len(y_true)),
        "classes": class_names,
        "malignant_classes": [class_names[i] for i in malignant_indices],
        "accuracy": accuracy(y_true, probs.argmax(axis=1)),
        "balanced_accuracy": balanced_accuracy(matrix),
        "macro_precision": _number(np.nanmean(precision)),
        "macro_recall": _number(np.nanmean(recall)),
        "macro_f1": _number(np.nanmean(f1)),
        "macro_auc": _mean_defined(aucs),
        "malignant_auc": malignant,
        "melanoma_auc": melanoma,
        "per_class": {
            name: {"support": int(matrix[i].sum()), "precision": _number(precision[i]),
                   "recall": _number(recall[i]), "f1": _number(f1[i]), "auc": aucs[i]}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
        "notes": notes,
    }


# -- segmentation ------------------------------------------------------------------------------

def _binary_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"predicted mask has shape {pred.shape} but the true mask {target.shape}")
    for mask in (pred, target):
        # A probability map passed by mistake would silently count every faint pixel as lesion.
        if mask.dtype.kind == "f" and np.any((mask > 0) & (mask < 1)):
            raise ValueError("mask has fractional values: threshold probabilities before computing overlap")
    return pred != 0, target != 0


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|) of two binary masks; 1.0 when both are empty."""
    a, b = _binary_pair(pred, target)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Jaccard index |A∩B| / |A∪B| of two binary masks; 1.0 when both are empty."""
    a, b = _binary_pair(pred, target)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def thresholded_jaccard(preds: Iterable[np.ndarray], targets: Iterable[np.ndarray],
                        threshold: float = ISIC_JACCARD_THRESHOLD) -> float:
    """ISIC 2018 Task 1 score: mean per-image Jaccard, where an image below ``threshold`` scores 0.

    Args:
        preds: predicted binary masks, one per image.
        targets: true binary masks, same order and shapes.
        threshold: per-image Jaccard below which the image counts as 0.

    Returns:
        The mean over images.
    """
    scores = np.array([iou(p, t) for p, t in zip(preds, targets, strict=True)])
    if len(scores) == 0:
        raise ValueError("no masks to evaluate")
    return float(np.where(scores >= threshold, scores, 0.0).mean())


def segmentation_report(preds: Iterable[np.ndarray], targets: Iterable[np.ndarray],
                        threshold: float = ISIC_JACCARD_THRESHOLD) -> dict[str, Any]:
    """Mean Dice, mean IoU and the ISIC thresholded Jaccard over a set of images, JSON-ready.

    Args:
        preds: predicted binary masks (nonzero = lesion), one per image.
        targets: true binary masks, same order and shapes.
        threshold: the thresholded-Jaccard cut-off (ISIC 2018: 0.65).

    Returns:
        ``n_images``, ``dice``, ``iou``, ``thresholded_jaccard``, ``jaccard_threshold`` and
        ``n_below_threshold`` (images whose Jaccard scored 0).
    """
    pairs = list(zip(preds, targets, strict=True))
    if not pairs:
        raise ValueError("no masks to evaluate")
    dices = np.array([dice(p, t) for p, t in pairs])
    ious = np.array([iou(p, t) for p, t in pairs])
    return {
        "n_images": len(pairs),
        "dice": float(dices.mean()),
        "iou": float(ious.mean()),
        "thresholded_jaccard": float(np.where(ious >= threshold, ious, 0.0).mean()),
        "jaccard_threshold": float(threshold),
        "n_below_threshold": int((ious < threshold).sum()),
    }


VALIDATION_SCORE_TERMS = "balanced accuracy + macro AUC + malignant AUC"  # what validation_score sums


def validation_score(report: dict[str, Any]) -> float:
    """Balanced accuracy + macro AUC + malignant AUC of a classification_report: picks a best epoch.

    Balanced accuracy rewards the rare malignant classes that plain accuracy ignores; the macro
    AUC adds the ranking quality that thresholded scores cannot see; the malignant-vs-benign AUC
    is the ranking a clinic's risk column is sorted by. An AUC that cannot be computed (one class
    absent from the validation split) counts 0.
    """
    return report["balanced_accuracy"] + sum(report.get(key) or 0.0 for key in ("macro_auc", "malignant_auc"))
