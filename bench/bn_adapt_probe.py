"""Probe: does re-estimating BatchNorm statistics on a clinic's own images (AdaBN) help a classifier?

A model's BatchNorm layers normalise every feature with the mean and variance seen in training.
A clinic whose camera, light or resolution differs shifts those statistics, and every layer after
the first feels it. AdaBN (Li et al. 2016; Schneider et al. 2020 for the mix) re-estimates them on
the clinic's own images, unlabelled: one forward pass over them in training mode, nothing learnt.
Each source of the index stands in for one clinic. Unlike the clinic-level colour transfer
(bench/clinic_colour_probe.py), the adaptation happens inside the network, where camera and
lesion colour may be easier to tell apart.

A classifier checkpoint is scored three ways on each source of each split, in PyTorch with the
pixels, masks and metadata of its validation (no augmentation): as trained (``none``), with every
BatchNorm layer's statistics re-estimated on that source's images (``adabn``), with the mean of the
trained and the re-estimated statistics (``adabn_half``), and with only the image backbone's
(``adabn_image``) or only its first layers' (``adabn_stem``) re-estimated. Results land as ``OUT/<split>/<variant>.csv``
with ``screen folder``'s columns that `bench/paired_compare.py` reads:

    python bench/bn_adapt_probe.py --run runs/starter2/classifier_cam3 --index runs/starter2/index.csv \\
        --masks runs/starter2/masks --bundle runs/starter2/bundle-cam --out runs/starter2/bn_probe
    python bench/paired_compare.py --index runs/starter2/index.csv --by-source \\
        --baseline runs/starter2/bn_probe/@none.csv --baseline-bundle runs/starter2/bundle-cam \\
        --candidate runs/starter2/bn_probe/@adabn.csv --candidate-bundle runs/starter2/bundle-cam
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from screening.manifest import load_manifest  # noqa: E402
from screening.metadata import DEFAULT_VOCABULARY  # noqa: E402
from training.data.dataset import ClassificationDataset  # noqa: E402
from screening.preprocess import risk_score, softmax  # noqa: E402
from training.inference import load_classifier  # noqa: E402
from training.train_classifier import predict_logits  # noqa: E402

# name -> (weight of the clinic's statistics, which BatchNorm layers adapt: their names' prefixes)
STEM = ("image_backbone.bn1", "image_backbone.blocks.0.", "image_backbone.blocks.1.")
VARIANTS: dict[str, tuple[float, tuple[str, ...]] | None] = {
    "none": None,
    "adabn": (1.0, ("",)),  # every layer, the mask branch's too
    "adabn_half": (0.5, ("",)),
    "adabn_image": (1.0, ("image_backbone.",)),  # the mask branch sees binary masks, not the camera
    "adabn_stem": (1.0, STEM),  # the first layers only: where white balance and sharpness live
}
BATCH = 32


def batchnorms(model: torch.nn.Module, prefixes: tuple[str, ...] = ("",)) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers whose names start with one of ``prefixes``, in the model's order."""
    return [m for name, m in model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and name.startswith(prefixes)]


@torch.no_grad()
def adapt_batchnorm(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    weight: float, prefixes: tuple[str, ...] = ("",)) -> torch.nn.Module:
    """A copy of ``model`` whose BatchNorm statistics (of the layers named by ``prefixes``) are
    ``weight`` x those of ``batches`` plus (1 - weight) x the trained ones; everything else
    (weights, the other layers' statistics, dropout, the original) unchanged.

    During the pass each BatchNorm layer normalises with its batch's statistics, so every layer
    sees inputs already adapted by the layers before it; ``momentum = None`` makes the running
    statistics the plain mean over all batches, whatever their number."""
    adapted = copy.deepcopy(model).eval()
    layers = batchnorms(adapted, prefixes)
    trained = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    for batch in batches:
        adapted(batch["image"], batch["mask"], batch["meta"])
    for bn, (mean, var) in zip(layers, trained):
        bn.running_mean.mul_(weight).add_(mean, alpha=1.0 - weight)
        bn.running_var.mul_(weight).add_(var, alpha=1.0 - weight)
        bn.eval()
    return adapted


@torch.no_grad()
def probabilities(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], temperature: float) -> np.ndarray:
    """The calibrated probabilities of every image, as evaluation computes them (predict_logits)
    and the runtime calibrates them (screening.preprocess.softmax)."""
    logits, _ = predict_logits(model, batches, torch.device("cpu"), channels_last=True)
    return softmax(logits, temperature)


def source_batches(rows: pd.DataFrame, state: dict, input_size: int, masks: Path,
                   channels_last: bool) -> list[dict[str, torch.Tensor]]:
    """Every image of ``rows`` as the classifier's validation feeds it, decoded once."""
    data = ClassificationDataset(rows, input_size, state["mean"], state["std"], DEFAULT_VOCABULARY,
                                 state["class_names"], mask_dir=masks, augment=False)
    items = [data[i] for i in range(len(data))]
    batches = []
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        image = torch.stack([c["image"] for c in chunk])
        batches.append({"image": image.contiguous(memory_format=torch.channels_last) if channels_last else image,
                        "mask": torch.stack([c["mask"] for c in chunk]),
                        "meta": torch.stack([c["meta"] for c in chunk]),
                        "label": torch.tensor([c["label"] for c in chunk])})
    return batches


def results_frame(rows: pd.DataFrame, probs: np.ndarray, classes: list[str], malignant: list[int]) -> pd.DataFrame:
    """The columns of ``screen folder``'s results that the report scorers read."""
    frame = pd.DataFrame({"image": [f"{i}{Path(p).suffix.lower()}" for i, p in zip(rows["image_id"], rows["image_path"])],
                          "status": "ok", "risk": risk_score(probs, malignant)})
    for k, name in enumerate(classes):
        frame[f"p_{name}"] = probs[:, k]
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a classifier stage folder (its best.pt)")
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True, help="the predicted-mask cache the classifier learnt from")
    parser.add_argument("--bundle", type=Path, required=True, help="the run's exported bundle: temperature, classes")
    parser.add_argument("--splits", nargs="+", default=["external", "test"])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, state = load_classifier(args.run / "best.pt")
    model = model.to(memory_format=torch.channels_last)
    manifest = load_manifest(args.bundle)
    if list(manifest.class_names) != list(state["class_names"]):
        raise SystemExit("the bundle's classes are not the checkpoint's")
    temperature = float(manifest.temperature)
    index = pd.read_csv(args.index, dtype=str, keep_default_na=False).replace("", np.nan)
    input_size = int(manifest.input_size[0])
    for split in args.splits:
        rows = index[index["split"] == split]
        frames: dict[str, list[pd.DataFrame]] = {v: [] for v in args.variants}
        for source, part in rows.groupby("source"):
            part = part.reset_index(drop=True)
            started = time.perf_counter()
            batches = source_batches(part, state, input_size, args.masks, channels_last=True)
            for variant in args.variants:
                adaptation = VARIANTS[variant]
                scored = model if adaptation is None else adapt_batchnorm(model, batches, *adaptation)
                probs = probabilities(scored, batches, temperature)
                frames[variant].append(results_frame(part, probs, state["class_names"], manifest.malignant_indices))
            print(f"{split} {source}: {len(part)} images, {time.perf_counter() - started:.0f} s", flush=True)
        (args.out / split).mkdir(parents=True, exist_ok=True)
        for variant, parts in frames.items():
            pd.concat(parts).to_csv(args.out / split / f"{variant}.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
