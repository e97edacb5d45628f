"""Image preprocessing and output postprocessing shared by training and screening.

Both sides call these functions, with parameters taken from the bundle manifest, so the
pixels a model saw in training are the pixels it sees at screening time.
"""

from __future__ import annotations

from typing import Any, Sequence

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


# -- colour constancy ----------------------------------------------------------------------------

SHADES_OF_GRAY = "shades_of_gray"
PREPROCESSING_STEPS = (SHADES_OF_GRAY,)


def shades_of_gray(images: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Shades of Gray colour constancy (Finlayson & Trezzi 2004) of uint8 RGB images.

    Each image's illuminant is estimated per channel as the Minkowski p-mean of its pixels and
    divided out, so a lesion photographed under a bluish LED and under a warm halogen
    dermatoscope reaches the model in similar colours: cameras and lights are what change
    between clinics, and the colour of a lesion is what the model reads. p = 6 is the value
    found best for dermoscopy (Barata et al. 2015); p = 1 is grey world, p -> inf max-RGB.

    Args:
        images: uint8 (H, W, 3) or (N, H, W, 3) RGB.
        power: the Minkowski norm p (>= 1).

    Returns:
        uint8 images of the same shape, each with a neutral (grey) estimated illuminant.
    """
    if power < 1:
        raise ValueError(f"shades of gray power must be >= 1, got {power}")
    pixels = np.asarray(images, dtype=np.float32)
    axes = (-3, -2)
    # Scaled to 0..1 first: 255**6 overflows nothing in float32, but it wastes its precision.
    illuminant = np.power(np.mean(np.power(pixels / 255.0, power), axis=axes, keepdims=True), 1.0 / power)
    norm = np.sqrt(np.sum(illuminant ** 2, axis=-1, keepdims=True))
    # A black image has no illuminant to estimate: leave it as it is.
    gain = np.where(norm > 1e-6, norm / (np.sqrt(3.0) * np.maximum(illuminant, 1e-6)), 1.0)
    return np.clip(np.rint(pixels * gain), 0, 255).astype(np.uint8)


def preprocessing_problems(steps: Any) -> list[str]:
    """What is wrong with a manifest's ``preprocessing`` list, one line per problem (empty if fine)."""
    if not isinstance(steps, list):
        return [f"preprocessing must be a list of steps, got {type(steps).__name__}"]
    problems = []
    for i, step in enumerate(steps):
        where = f"preprocessing[{i}]"
        if not isinstance(step, dict) or step.get("name") not in PREPROCESSING_STEPS:
            name = step.get("name") if isinstance(step, dict) else step
            problems.append(f"{where}: unknown step {name!r}; this screening version knows "
                            f"{', '.join(PREPROCESSING_STEPS)}")
            continue
        power = step.get("power", 6.0)
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not 1.0 <= power <= 64.0:
            problems.append(f"{where}.power: expected a number in [1, 64], got {power!r}")
        extra = set(step) - {"name", "power"}
        if extra:
            problems.append(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    return problems


def apply_preprocessing(images: np.ndarray, steps: Sequence[dict]) -> np.ndarray:
    """Apply a bundle's declared preprocessing steps, in order, to uint8 RGB at input size.

    Training and screening both call this with the steps of the manifest (``preprocessing``),
    so a model never sees pixels prepared another way than the ones it learned from.

    Raises:
        ValueError: for a step this runtime does not know (the manifest check reports it first).
    """
    for step in steps:
        name = step.get("name")
        if name == SHADES_OF_GRAY:
            images = shades_of_gray(images, float(step.get("power", 6.0)))
        else:
            raise ValueError(f"unknown preprocessing step {name!r}; known: {', '.join(PREPROCESSING_STEPS)}")
    return images
