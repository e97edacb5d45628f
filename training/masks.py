"""Predict every indexed image's lesion mask with the trained segmenter, once, and cache it.

The classifier trains on these predicted masks rather than the ground truth, because at
screening time it only ever sees the segmenter's output. Masks are stored as 8-bit PNG
probability maps (p * 255) at the model input size, in ``<out_dir>/masks/<image_id>.png``; a
``source.json`` records which segmenter checkpoint made them, and a different checkpoint
invalidates the whole cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from screening.atomic import atomic_write
from screening.manifest import sha256_file

from .common import Distributed, config_argument_parser, config_from_args, read_index
from .config import Config
from .data.dataset import load_resized
from .inference import batched, load_segmenter, predict_mask_probabilities


def mask_cache_dir(config: Config) -> Path:
    return config.out / "masks"


def segmenter_checkpoint(config: Config) -> Path:
    return config.out / "segmenter" / "best.pt"


def _recorded_source(source_file: Path) -> dict | None:
    """The checkpoint a cache was made with; None when unknown (missing or unreadable file)."""
    try:
        return json.loads(source_file.read_text())
    except (OSError, ValueError):
        return None


def cache_masks(config: Config, index: pd.DataFrame, batch_size: int = 32) -> Path:
    """Fill the mask cache for every row of ``index``; returns the cache folder."""
    checkpoint = segmenter_checkpoint(config)
    cache = mask_cache_dir(config)
    source = {"segmenter_checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint)}
    source_file = cache / "source.json"
    recorded = _recorded_source(source_file)
    if recorded != source:
        stale = sorted(cache.glob("*.png"))
        if stale:
            maker = "another segmenter checkpoint" if recorded else "an unknown segmenter checkpoint"
            print(f"the mask cache in {cache} was made by {maker}: clearing its {len(stale)} masks")
            for png in stale:
                png.unlink()
        # Written only when it changes, and atomically: under torchrun every rank calls this
        # after rank 0 has filled the cache, and a rank reading a half-rewritten file would
        # take it for a different checkpoint and clear the cache under the others.
        atomic_write(source_file, (json.dumps(source, indent=2) + "\n").encode())

    todo = [row for row in index.itertuples() if not (cache / f"{row.image_id}.png").is_file()]
    if not todo:
        return cache
    model, state = load_segmenter(checkpoint)
    device = Distributed().device(config.device)
    model.to(device)
    size = config.data.input_size
    for rows in tqdm(list(batched(todo, batch_size)), desc="predicting masks", dynamic_ncols=True, disable=None):
        images = np.stack([load_resized(row.image_path, (size, size)) for row in rows])
        probs = predict_mask_probabilities(model, images, state["mean"], state["std"], device)
        for row, prob in zip(rows, probs):
            png = np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)
            cv2.imwrite(str(cache / f"{row.image_id}.png"), png)
    return cache


def main(argv: list[str] | None = None) -> int:
    parser = config_argument_parser("masks", "Predict and cache the segmenter's mask of every indexed image.")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    with torch.inference_mode():
        cache = cache_masks(config, read_index(config))
    print(f"masks cached in {cache}")
    return 0
