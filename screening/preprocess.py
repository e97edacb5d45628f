"""Image preprocessing and output postprocessing shared by training and screening.

Both sides call these functions, with parameters taken from the bundle manifest, so the
pixels a model saw in training are the pixels it sees at screening time.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an 8-bit RGB (H, W, 3) image to ``size`` = (height, width), whole frame, no crop.

    The whole field of view is kept (a crop could cut the lesion border, which carries the
    signal); area interpolation when shrinking avoids aliasing of hairs and pigment network.
    """
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] > height or image.shape[1] > width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (H, W) mask with nearest neighbour, so a binary mask stays binary."""
    height, width = size
    if mask.shape[:2] == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (H, W, 3) or (N, H, W, 3) RGB -> float32 (3, H, W) or (N, 3, H, W), (x/255 - mean) / std."""
    scale = np.float32(1.0 / 255.0)
    mean_arr = np.asarray(mean, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(std, dtype=np.float32)
    out = (images.astype(np.float32) * scale - mean_arr) * inv_std
    return np.ascontiguousarray(np.moveaxis(out, -1, -3))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64 for stable sums."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def risk_score(probabilities: np.ndarray, malignant_indices: Sequence[int]) -> np.ndarray:
    """Summed probability of the malignant classes, the quantity the output is ranked by."""
    return np.asarray(probabilities)[..., list(malignant_indices)].sum(axis=-1)
