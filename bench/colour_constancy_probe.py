"""Does Shades of Gray colour constancy help a model travel to an unseen source? A quick probe.

Frozen ImageNet EfficientNet-Lite0 features (global average pool, 160 px) + logistic regression,
trained on a class-stratified sample of the index's ``train`` split and scored on its
``external`` split (sources held out whole): melanoma-vs-nevus AUC and malignant-vs-benign AUC,
with and without the same colour constancy applied to both sides. Cheap (a few minutes on 2
cores), so it can decide the preprocessing before hours of fine-tuning; not a substitute for the
fine-tuned model's own figures.

    python bench/colour_constancy_probe.py --index runs/starter2/index.csv --train 3000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from screening.preprocess import apply_preprocessing, normalise  # noqa: E402
from training.data.dataset import load_resized  # noqa: E402
from training.models.backbones import create_backbone  # noqa: E402

MALIGNANT = {"mel", "bcc", "akiec"}
VARIANTS = {"none": [], "shades_of_gray p=6": [{"name": "shades_of_gray", "power": 6}]}


def features(model: torch.nn.Module, paths: list[str], steps: list[dict], size: int = 160) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), 64):
            pixels = np.stack([load_resized(p, (size, size)) for p in paths[start:start + 64]])
            pixels = apply_preprocessing(pixels, steps)
            out.append(model(torch.from_numpy(normalise(pixels, (0.5,) * 3, (0.5,) * 3))).numpy())
    return np.concatenate(out)


def linear_probe(x_train: np.ndarray, train_labels: pd.Series, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on standardised frozen features: (malignant risk, melanoma
    probability) of every test row. The probes' one classifier (bench/backbone_probe.py too)."""
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=2000, C=0.1, class_weight="balanced")
    clf.fit(scaler.transform(x_train), train_labels)
    probs = clf.predict_proba(scaler.transform(x_test))
    classes = list(clf.classes_)
    risk = probs[:, [classes.index(c) for c in MALIGNANT if c in classes]].sum(axis=1)
    return risk, probs[:, classes.index("mel")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--train", type=int, default=3000, help="training images sampled (stratified)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    index = pd.read_csv(args.index)
    train = index[index["split"] == "train"]
    train = train.groupby("label").sample(frac=min(1.0, args.train / len(train)), random_state=args.seed)
    external = index[index["split"] == "external"]
    model = create_backbone("tf_efficientnet_lite0", "package:efficientnet_lite0", num_classes=0).eval()
    print(f"train {len(train)} images ({', '.join(f'{k} {v}' for k, v in train['label'].value_counts().items())}); "
          f"external {len(external)} ({', '.join(sorted(external['source'].unique()))})")
    y_mal = external["label"].isin(MALIGNANT).to_numpy()
    melnv = external["label"].isin(["mel", "nv"]).to_numpy()
    for name, steps in VARIANTS.items():
        x_train = features(model, list(train["image_path"]), steps)
        x_ext = features(model, list(external["image_path"]), steps)
        risk, mel = linear_probe(x_train, train["label"], x_ext)
        print(f"{name:<20} external malignant AUC {roc_auc_score(y_mal, risk):.3f}  "
              f"melanoma-vs-nevus AUC {roc_auc_score(external['label'][melnv] == 'mel', mel[melnv]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
