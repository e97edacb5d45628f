"""On sample_data, metadata and mask make the fusion model better than the image-only model.

The sample generator is built so that colour, mask shape and metadata each separate one pair
of classes (sample_data/README.md): bkl and bcc look alike and differ only in age and site, so
an image-only model can not tell them apart, by design.
"""

from __future__ import annotations

import shutil

import pandas as pd

from training.config import load_config
from training.evaluate import eval_dir, evaluate
from training.train_classifier import train as train_classifier

from ..conftest import tiny_overrides


def pair_accuracy(config, first: str, second: str) -> float:
    """Among validation images of two classes, how often the true one of the two scores higher."""
    predictions = pd.read_csv(eval_dir(config) / "predictions.csv")
    pair = predictions[predictions["label"].isin([first, second])]
    picked = (pair[f"p_{first}"] > pair[f"p_{second}"]).map({True: first, False: second})
    return float((picked == pair["label"]).mean())


def test_fusion_with_meta_and_mask_beats_image_only(trained_tiny, tmp_path):
    full = evaluate(trained_tiny)["calibrated"]

    out = tmp_path / "image_only"
    (out / "segmenter").mkdir(parents=True)
    shutil.copy(trained_tiny.out / "index.csv", out / "index.csv")
    shutil.copy(trained_tiny.out / "segmenter" / "best.pt", out / "segmenter" / "best.pt")
    config = load_config(None, [*tiny_overrides(out), "classifier.model.use_meta=false",
                                "classifier.model.use_mask=false"])
    train_classifier(config)
    image_only = evaluate(config)["calibrated"]

    full_pair, image_pair = pair_accuracy(trained_tiny, "bkl", "bcc"), pair_accuracy(config, "bkl", "bcc")
    print(f"balanced accuracy: fusion {full['balanced_accuracy']:.3f}, image only "
          f"{image_only['balanced_accuracy']:.3f}; macro AUC {full['macro_auc']:.3f} vs "
          f"{image_only['macro_auc']:.3f}; bkl vs bcc {full_pair:.2f} vs {image_pair:.2f}")
    assert full["balanced_accuracy"] > image_only["balanced_accuracy"]
    assert full["macro_auc"] > image_only["macro_auc"]
    # The pair only metadata separates: the fusion model gets it, the image-only model guesses.
    assert full_pair >= 0.9 and full_pair - image_pair >= 0.2
