"""Test-time augmentation: the same batch seen flipped, the class logits averaged.

A lesion has no canonical orientation, so a flipped image is as valid an input as the
original; averaging the logits over flips removes part of the model's orientation noise. The
segmenter's mask is averaged over the same flips (each un-flipped first), so the mask the
classifier reads and the lesion area reported stay consistent with the image it was given.
Costs one full model pass per view: ``flip`` doubles the inference time, ``flip4`` quadruples it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# Each view is a tuple of image axes to reverse on (N, C, H, W) arrays: -1 = horizontal, -2 = vertical.
TTA_VIEWS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((),),
    "flip": ((), (-1,)),
    "flip4": ((), (-1,), (-2,), (-2, -1)),
}
TTA_MODES = tuple(TTA_VIEWS)


def check_mode(mode: str) -> str:
    """``mode`` if known; ValueError listing the modes otherwise."""
    if mode not in TTA_VIEWS:
        raise ValueError(f"unknown test-time augmentation {mode!r}; choose one of {', '.join(TTA_MODES)}")
    return mode


def _flip(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(np.flip(array, axis=axes)) if axes else array


def run_views(mode: str, run: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
              seg: np.ndarray, cls: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run both models once per view of ``mode``; the mean mask (upright) and mean logits.

    Args:
        mode: one of ``TTA_MODES``.
        run: (segmenter image, classifier image, metadata) -> (mask N x 1 x H x W, logits N x K).
        seg, cls: normalised (N, 3, H, W) model inputs; meta: (N, D) one-hot metadata.
    """
    masks, logits = [], []
    for axes in TTA_VIEWS[check_mode(mode)]:
        view_seg = _flip(seg, axes)
        # One normalised batch serves both models when they share statistics: flip it once.
        mask, view_logits = run(view_seg, view_seg if cls is seg else _flip(cls, axes), meta)
        masks.append(_flip(np.asarray(mask), axes))
        logits.append(np.asarray(view_logits, dtype=np.float64))
    if len(logits) == 1:
        return masks[0], logits[0]
    return np.mean(masks, axis=0).astype(np.float32), np.mean(logits, axis=0)
