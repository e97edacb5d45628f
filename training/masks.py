"""Predict every indexed image's lesion mask with the trained segmenter, once, and cache it.

The classifier trains on these predicted masks rather than the ground truth, because at
screening time it only ever sees the segmenter's output. Masks are stored as 8-bit PNG
probability maps (p * 255) at the model input size, in ``<out_dir>/masks/<image_id>.png``; a
``source.json`` records which segmenter checkpoint made them, at which size and from which
preprocessing, and a difference in any invalidates the whole cache.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator

import cv2
import numpy as np
import pandas as pd
import torch

from screening.atomic import atomic_write
from screening.manifest import sha256_file
from screening.preprocess import normalise

from .common import Distributed, config_argument_parser, config_from_args, load_checkpoint, read_index
from .config import Config
from .data.dataset import load_resized
from .inference import SegmenterWithSigmoid, batched, load_segmenter, predict_mask_probabilities
from .lineage import LineageError, check_pixels


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


def _same_but_unsized(recorded: dict | None, source: dict, cache: Path) -> bool:
    """Whether a cache recorded before input sizes were (same checkpoint and preprocessing) holds
    masks of this size: the record is then upgraded rather than minutes of masks predicted again."""
    if recorded is None or "input_size" in recorded or {**recorded, "input_size": source["input_size"]} != source:
        return False
    sample = next(iter(cache.glob("*.png")), None)
    if sample is None:
        return True
    mask = cv2.imread(str(sample), cv2.IMREAD_GRAYSCALE)
    return mask is not None and mask.shape == (source["input_size"], source["input_size"])


def cache_masks(config: Config, index: pd.DataFrame, batch_size: int = 32) -> Path:
    """Fill the mask cache for every row of ``index``; returns the cache folder."""
    checkpoint = segmenter_checkpoint(config)
    try:  # a segmenter trained on other pixels than these would predict other masks than it learnt
        check_pixels(load_checkpoint(checkpoint), config, f"the segmenter {checkpoint}")
    except LineageError as exc:
        raise SystemExit(f"error: {exc}") from exc
    cache = mask_cache_dir(config)
    source = {"segmenter_checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint)}
    if config.data.preprocessing:  # masks predicted from other pixels are other masks
        source["preprocessing"] = config.data.preprocessing
    source["input_size"] = config.data.input_size  # and masks of another size are not these either
    source_file = cache / "source.json"
    recorded = _recorded_source(source_file)
    if recorded != source and _same_but_unsized(recorded, source, cache):
        # a cache from before sizes were recorded, of this size: kept, its record rewritten
        atomic_write(source_file, (json.dumps(source, indent=2) + "\n").encode())
        recorded = source
    if recorded != source:
        stale = sorted(cache.glob("*.png"))
        if stale:
            maker = ("another segmenter checkpoint, input size or preprocessing" if recorded
                     else "an unknown segmenter checkpoint")
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
    size = config.data.input_size
    with mask_predictor(checkpoint, size, Distributed().device(config.device), batch_size) as (predict, batch_size):
        started, total = time.monotonic(), len(todo)
        for done, rows in enumerate(batched(todo, batch_size)):
            images = np.stack([load_resized(row.image_path, (size, size), config.data.preprocessing)
                               for row in rows])
            for row, prob in zip(rows, predict(images)):
                png = np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)
                cv2.imwrite(str(cache / f"{row.image_id}.png"), png)
            if done % 100 == 0:
                count = min(total, (done + 1) * batch_size)
                print(f"predicting masks: {count}/{total} "
                      f"({count / max(1e-9, time.monotonic() - started):.1f} images/s)", flush=True)
    return cache


# ONNX Runtime runs this U-Net about five times faster than PyTorch on a CPU, best at batch 8
# (docs/performance.md), and it is the engine screening runs: the classifier then trains on the
# very masks the runtime will hand it (the export's parity check bounds the difference at 1e-4).
ORT_BATCH = 8


@contextmanager
def mask_predictor(checkpoint: Path, size: int, device: torch.device,
                   batch_size: int) -> Iterator[tuple[Callable[[np.ndarray], np.ndarray], int]]:
    """(uint8 (N, H, W, 3) -> float32 (N, H, W) lesion probabilities, its batch size) for a checkpoint:
    ONNX Runtime on a CPU, PyTorch on a GPU."""
    model, state = load_segmenter(checkpoint)
    if device.type == "cpu":
        with onnxruntime_predictor(model, size, state["mean"], state["std"]) as predict:
            yield predict, ORT_BATCH
        return
    model.to(device)

    def predict(images: np.ndarray) -> np.ndarray:
        return predict_mask_probabilities(model, images, state["mean"], state["std"], device)
    yield predict, batch_size


@contextmanager
def onnxruntime_predictor(model: torch.nn.Module, size: int, mean, std) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
    """uint8 (N, H, W, 3) -> float32 (N, H, W) lesion probabilities, through the runtime's own
    ONNX Runtime runner (same session settings as screening)."""
    from screening.backends.onnxrt import OnnxRuntimeRunner  # ONNX Runtime only when predicting

    from .export import export_onnx  # export imports this module's neighbours; import late

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "segmenter.onnx"
        export_onnx(SegmenterWithSigmoid(model.cpu().eval()), {"image": torch.zeros(2, 3, size, size)}, "mask",
                    path, opset=17)
        with OnnxRuntimeRunner(path, threads=max(1, torch.get_num_threads())) as runner:
            yield lambda images: runner.infer({"image": normalise(images, mean, std)})["mask"][:, 0]
