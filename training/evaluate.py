"""`python -m training evaluate`: validation metrics, temperature calibration and plots.

Writes ``<out_dir>/<stage_dir>/eval/evaluation.json`` (classification metrics before and after
temperature scaling, expected calibration error, segmentation Dice/IoU/thresholded Jaccard),
``predictions.csv`` (calibrated per-image probabilities) and PNG plots. The temperature found
here is what `export` writes into the bundle manifest. Each fine-tuning stage's evaluation lies
beside its own checkpoints, so evaluating one stage never overwrites another's; the report names
the checkpoint it evaluated (path and sha256), and `export` refuses weights retrained since.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from screening.manifest import sha256_file
from screening.operating_points import DEFAULT_SENSITIVITIES, TooFewCases, fit_operating_points
from screening.preprocess import resize_mask, risk_score, softmax
from screening.results import DECIMALS

from .calibration import expected_calibration_error, fit_temperature
from .common import config_argument_parser, config_from_args, place, read_index, split
from .config import Config
from .inference import load_classifier
from .lineage import LineageError, check_masks_from, check_pixels
from .masks import mask_cache_dir, segmenter_checkpoint
from .metrics import classification_report, segmentation_report
from .plots import plot_confusion_matrix, plot_reliability, plot_roc_curves
from .train_classifier import build_datasets, mask_source, predict_logits, uses_predicted_masks


def eval_dir(config: Config) -> Path:
    """Where the evaluation of ``config``'s classifier stage goes: beside that stage's checkpoints."""
    return config.classifier_dir / "eval"


def evaluate(config: Config) -> dict[str, Any]:
    """Evaluate the trained models of ``config`` on the validation split; returns the report."""
    index = read_index(config)
    out = eval_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = config.classifier_dir / "best.pt"
    model, state = load_classifier(checkpoint)
    check_lineage(config, state, checkpoint)  # before the mask cache: a mismatch would rebuild it for nothing
    mask_dir = mask_source(config, index)
    _, val_set, classes = build_datasets(config, index, mask_dir)
    model = place(model, torch.device("cpu"), config.channels_last)
    loader = DataLoader(val_set, batch_size=config.classifier.optim.batch_size, num_workers=config.data.workers)
    logits, labels = predict_logits(model, loader, torch.device("cpu"), config.channels_last)

    temperature = fit_temperature(logits, labels)
    raw, calibrated = softmax(logits), softmax(logits, temperature)
    report: dict[str, Any] = {
        "split": "val",
        "checkpoint": checkpoint_record(checkpoint),
        # the masks these figures (and the temperature and thresholds) were measured with
        **({"segmenter": checkpoint_record(segmenter_checkpoint(config))} if mask_dir is not None else {}),
        "images": int(len(labels)),
        "classes": classes.class_names,
        "temperature": temperature,
        "ece_before": expected_calibration_error(raw, labels),
        "ece_after": expected_calibration_error(calibrated, labels),
        "uncalibrated": classification_report(labels, raw, classes.class_names, classes.malignant_indices),
        "calibrated": classification_report(labels, calibrated, classes.class_names, classes.malignant_indices),
    }
    val = split(index, "val")
    report["operating_points"] = validation_operating_points(calibrated, labels, classes.malignant_indices,
                                                             f"validation split of {config.data.index}")
    if mask_dir is not None:
        report["segmentation"] = _segmentation(config, val)

    _write_predictions(out / "predictions.csv", val, labels, calibrated, classes.class_names)
    plot_roc_curves(labels, calibrated, classes.class_names, classes.malignant_indices, out / "roc.png")
    plot_confusion_matrix(np.asarray(report["calibrated"]["confusion_matrix"]), classes.class_names,
                          out / "confusion_matrix.png")
    plot_reliability(raw, calibrated, labels, out / "reliability.png", temperature=temperature)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def check_lineage(config: Config, state: dict[str, Any], checkpoint: Path) -> None:
    """Refuse to evaluate or export a classifier with other pixels or masks than it learnt from."""
    try:
        check_pixels(state, config, f"the classifier {checkpoint}")
        if uses_predicted_masks(config):  # (the segmenter's own pixels: checked where the masks are made)
            check_masks_from(state, segmenter_checkpoint(config), f"the classifier {checkpoint}")
    except LineageError as exc:
        raise SystemExit(f"error: {exc}") from exc


def checkpoint_record(path: Path) -> dict[str, str]:
    """What identifies the evaluated weights: a retrained or another stage's best.pt differs."""
    return {"path": str(path), "sha256": sha256_file(path)}


def validation_operating_points(calibrated: np.ndarray, labels: np.ndarray, malignant: list[int],
                                fitted_on: str) -> list[dict[str, Any]]:
    """Risk thresholds at 90 % and 95 % malignant sensitivity, from the risk exactly as screening
    computes it (calibrated probabilities rounded to the CSV's precision, malignant ones summed).

    Returns no point when the split has too few malignant cases to place a threshold: a bundle
    without operating points screens with an empty flag column rather than with a guessed one.
    """
    risk = risk_score(np.round(calibrated, DECIMALS), malignant)
    try:
        return fit_operating_points(risk, np.isin(labels, malignant), DEFAULT_SENSITIVITIES,
                                    fitted_on=f"{fitted_on}: {len(labels)} images")
    except TooFewCases as exc:
        print(f"no operating points: {exc}")
        return []


def _segmentation(config: Config, val: pd.DataFrame) -> dict[str, Any]:
    """Predicted (cached) masks against the ground truth, both at the model input size."""
    threshold = config.classifier.model.mask_threshold
    size = (config.data.input_size, config.data.input_size)
    preds, truths = [], []
    for row in val[val["mask_path"] != ""].itertuples():
        prob = cv2.imread(str(mask_cache_dir(config) / f"{row.image_id}.png"), cv2.IMREAD_GRAYSCALE)
        truth = cv2.imread(row.mask_path, cv2.IMREAD_GRAYSCALE)
        if prob is None or truth is None:
            continue
        preds.append(prob.astype(np.float32) / 255.0 > threshold)
        truths.append(resize_mask(truth, size) > 127)
    if not preds:
        return {"n_images": 0}
    return segmentation_report(np.stack(preds), np.stack(truths))


def _write_predictions(path: Path, val: pd.DataFrame, labels, probs, names) -> None:
    frame = pd.DataFrame({"image_id": val["image_id"], "label": [names[i] for i in labels]})
    for i, name in enumerate(names):
        frame[f"p_{name}"] = probs[:, i]
    frame.to_csv(path, index=False, float_format="%.6f")


def main(argv: list[str] | None = None) -> int:
    parser = config_argument_parser("evaluate", "Metrics, calibration and plots on the validation split.")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    report = evaluate(config)
    cal = report["calibrated"]
    print(f"validation images: {report['images']}, temperature {report['temperature']:.3f}, "
          f"ECE {report['ece_before']:.4f} -> {report['ece_after']:.4f}")
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "malignant_auc", "melanoma_auc"):
        if cal.get(key) is not None:
            print(f"  {key}: {cal[key]:.4f}")
    if "segmentation" in report:
        print(f"  segmentation: {json.dumps(report['segmentation'])}")
    print(f"report written to {eval_dir(config) / 'evaluation.json'}")
    return 0
