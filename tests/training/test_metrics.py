"""Classification and segmentation metrics on tiny cases computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.metrics import (
    binary_auc,
    classification_report,
    confusion_matrix,
    dice,
    iou,
    malignant_auc,
    melanoma_auc,
    one_vs_rest_auc,
    segmentation_report,
    thresholded_jaccard,
)

CLASSES = ["nv", "bkl", "mel", "bcc"]
MALIGNANT = [2, 3]


def _probs_for(predicted: list[int], n_classes: int, confidence: float = 0.7) -> np.ndarray:
    """Probabilities whose arg-max is ``predicted``; the rest spread evenly."""
    probs = np.full((len(predicted), n_classes), (1 - confidence) / (n_classes - 1))
    probs[np.arange(len(predicted)), predicted] = confidence
    return probs


def test_perfect_predictions_score_one_everywhere():
    y = np.array([0, 1, 2, 3, 0, 2])
    report = classification_report(y, _probs_for(list(y), 4), CLASSES, MALIGNANT)
    for key in ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
                "macro_auc", "malignant_auc", "melanoma_auc"):
        assert report[key] == pytest.approx(1.0), key
    assert report["confusion_matrix"] == [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]
    assert report["notes"] == []
    assert report["malignant_classes"] == ["mel", "bcc"]


def test_known_confusion_matrix_gives_hand_computed_scores():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = [0, 0, 1, 1, 2, 2]
    names = ["nv", "mel", "bcc"]
    report = classification_report(y_true, _probs_for(y_pred, 3), names, [1, 2])
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    per_class = report["per_class"]
    assert [per_class[n]["precision"] for n in names] == pytest.approx([1.0, 0.5, 0.5])
    assert [per_class[n]["recall"] for n in names] == pytest.approx([2 / 3, 0.5, 1.0])
    assert [per_class[n]["f1"] for n in names] == pytest.approx([0.8, 0.5, 2 / 3])
    assert [per_class[n]["support"] for n in names] == [3, 2, 1]
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert confusion_matrix(y_true, y_pred, 3).tolist() == report["confusion_matrix"]


def test_auc_of_a_known_ranking():
    # One of the four positive/negative pairs is ordered wrongly: AUC 3/4.
    assert binary_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # A tie counts as half a correctly ordered pair.
    assert binary_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert binary_auc([1, 1, 1], [0.1, 0.2, 0.3]) is None


def test_class_absent_from_truth_has_no_auc_and_is_left_out_of_macro():
    y = np.array([0, 0, 1, 2, 2])
    probs = np.array([[.7, .1, .1, .1], [.4, .3, .2, .1], [.2, .5, .2, .1], [.1, .1, .6, .2], [.5, .1, .3, .1]])
    aucs = one_vs_rest_auc(y, probs)
    assert aucs[3] is None
    report = classification_report(y, probs, CLASSES, MALIGNANT)
    assert report["per_class"]["bcc"]["auc"] is None
    assert report["macro_auc"] == pytest.approx(np.mean(aucs[:3]))
    assert "AUC of class 'bcc' is undefined (no cases in y_true); left out of macro_auc" in report["notes"]
    assert "classes neither present nor predicted, left out of the macro averages: bcc" in report["notes"]
    # bcc never occurs nor is predicted, so it cannot drag the macro recall down.
    assert report["macro_recall"] == pytest.approx(np.mean([report["per_class"][c]["recall"] for c in CLASSES[:3]]))


def test_malignant_auc_ranks_by_summed_malignant_probability():
    names = ["nv", "mel", "bcc"]
    # The benign lesion has the larger malignant sum (0.8) though no single malignant class beats 0.6.
    probs = np.array([[0.2, 0.4, 0.4], [0.4, 0.6, 0.0]])
    y = np.array([0, 1])
    assert malignant_auc(y, probs, [1, 2]) == pytest.approx(0.0)
    assert melanoma_auc(y, probs, names) == pytest.approx(1.0)


def test_melanoma_auc_is_none_without_a_mel_class():
    names = ["benign", "malignant"]
    report = classification_report(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]), names, [1])
    assert report["melanoma_auc"] is None
    assert "melanoma_auc is undefined: no 'mel' class" in report["notes"]
    assert report["malignant_auc"] == pytest.approx(1.0)


def test_report_is_json_ready():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=20)
    y = rng.integers(0, 4, size=20)
    report = classification_report(y, probs, CLASSES, MALIGNANT)
    assert json.loads(json.dumps(report)) == report


@pytest.mark.parametrize(("y", "probs", "message"), [
    (np.array([0, 1]), np.ones((3, 4)) / 4, "y_true has shape (2,) but probs has 3 rows"),
    (np.array([0, 4]), np.ones((2, 4)) / 4, "y_true holds class index 4, outside 0..3"),
    (np.array([0.0, 1.0]), np.ones((2, 4)) / 4, "y_true must hold integer class indices, got dtype float64"),
    (np.array([0, 1]), np.ones((2, 3)) / 3, "probs has 3 columns for 4 classes"),
])
def test_bad_inputs_are_named(y, probs, message):
    with pytest.raises(ValueError) as excinfo:
        classification_report(y, probs, CLASSES, MALIGNANT)
    assert str(excinfo.value) == message


# -- segmentation ------------------------------------------------------------------------------

def _square(top: int, left: int, side: int = 2, size: int = 6) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top:top + side, left:left + side] = 255
    return mask


def test_dice_and_iou_of_known_masks():
    a, b = _square(0, 0), _square(0, 1)  # 4 pixels each, 2 shared, 6 in the union
    assert dice(a, b) == pytest.approx(2 * 2 / 8)
    assert iou(a, b) == pytest.approx(2 / 6)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert dice(a, _square(3, 3)) == 0.0
    # Both empty: nothing to find and nothing found is a perfect segmentation.
    empty = np.zeros((6, 6), np.uint8)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(a > 0, b > 0) == dice(a, b)


def test_thresholded_jaccard_zeroes_images_below_065():
    target = np.zeros((10, 10), np.uint8)
    target[:, :5] = 1  # 50 pixels
    perfect = target.copy()
    partial = np.zeros_like(target)
    partial[:6, :5] = 1  # IoU 30/50 = 0.6: below 0.65, scores 0
    good = np.zeros_like(target)
    good[:7, :5] = 1  # IoU 35/50 = 0.7
    preds, targets = [perfect, partial, good], [target] * 3
    assert thresholded_jaccard(preds, targets) == pytest.approx((1.0 + 0.0 + 0.7) / 3)
    report = segmentation_report(preds, targets)
    assert report == pytest.approx({
        "n_images": 3, "dice": (1.0 + 60 / 80 + 70 / 85) / 3, "iou": (1.0 + 0.6 + 0.7) / 3,
        "thresholded_jaccard": 1.7 / 3, "jaccard_threshold": 0.65, "n_below_threshold": 1,
    })


def test_probability_maps_and_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="^mask has fractional values: threshold probabilities"):
        dice(np.full((4, 4), 0.3), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"^predicted mask has shape \(4, 4\) but the true mask \(4, 5\)$"):
        iou(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="^no masks to evaluate$"):
        segmentation_report([], [])


def test_validation_score_is_balanced_accuracy_plus_both_aucs():
    from training.metrics import validation_score

    assert validation_score({"balanced_accuracy": 0.6, "macro_auc": 0.9, "malignant_auc": 0.8}) == pytest.approx(2.3)
    # Class configurations without malignant classes have no malignant AUC.
    assert validation_score({"balanced_accuracy": 0.6, "macro_auc": 0.9}) == pytest.approx(1.5)
    # A split where no AUC can be computed still ranks epochs by balanced accuracy.
    assert validation_score({"balanced_accuracy": 0.6, "macro_auc": None, "malignant_auc": None}) == pytest.approx(0.6)
