"""Paired image/mask augmentation on uint8 arrays, applied after the shared resize.

Geometry (flips, a rotation by any angle and a small scale, one affine warp) is applied to the
image and its mask alike, the mask with nearest neighbour so it keeps its values. Both use a
reflected border: a dermoscopy lesion has no canonical orientation, and a reflected image
corner must carry the reflected mask corner too, or the pair would disagree there. Colour
jitter (brightness, contrast, hue) touches the image only. All randomness comes from the
``np.random.Generator`` passed in, so a seeded caller gets the same pair every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """How strong each augmentation is; the defaults are mild on purpose."""

    rotate: bool = True  # rotate by an angle drawn uniformly from [0, 360)
    hflip: float = 0.5  # probability of a horizontal flip
    vflip: float = 0.5  # probability of a vertical flip
    scale: tuple[float, float] = (0.9, 1.1)  # zoom factor range around the centre
    brightness: float = 0.1  # additive shift up to this fraction of full scale
    contrast: float = 0.1  # contrast factor drawn from [1 - c, 1 + c]
    hue: float = 0.02  # hue shift up to this fraction of the colour circle


DEFAULT_AUGMENT = AugmentConfig()


def flip_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
              config: AugmentConfig = DEFAULT_AUGMENT) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal and vertical flips, the same for image and mask."""
    if rng.random() < config.hflip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < config.vflip:
        image, mask = image[::-1], mask[::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def rotate_scale_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                      config: AugmentConfig = DEFAULT_AUGMENT) -> tuple[np.ndarray, np.ndarray]:
    """One random rotation and zoom about the centre: bilinear for the image, nearest for the mask."""
    angle = rng.uniform(0.0, 360.0) if config.rotate else 0.0
    scale = rng.uniform(*config.scale)
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, scale)
    image = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
    mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REFLECT_101)
    return image, mask


def jitter_colour(image: np.ndarray, rng: np.random.Generator,
                  config: AugmentConfig = DEFAULT_AUGMENT) -> np.ndarray:
    """Random hue shift, contrast and brightness of an RGB uint8 image."""
    if config.hue > 0:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)  # hue on 0..255 for uint8
        shift = int(round(rng.uniform(-config.hue, config.hue) * 256))
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 256).astype(np.uint8)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    contrast = rng.uniform(1.0 - config.contrast, 1.0 + config.contrast)
    brightness = rng.uniform(-config.brightness, config.brightness) * 255.0
    pixels = image.astype(np.float32)
    mean = pixels.mean()
    pixels = (pixels - mean) * contrast + mean + brightness
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                 config: AugmentConfig = DEFAULT_AUGMENT) -> tuple[np.ndarray, np.ndarray]:
    """Flip, rotate, scale and colour-jitter an image with its mask.

    Args:
        image: (H, W, 3) uint8 RGB, already at the model's input size.
        mask: (H, W) uint8 mask (binary 0/255 or a 0..255 probability), same H and W.
        rng: the only source of randomness.
        config: augmentation strengths.

    Returns:
        The augmented (image, mask), same shapes and dtypes.
    """
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape[:2]} differ in size")
    image, mask = flip_pair(image, mask, rng, config)
    image, mask = rotate_scale_pair(image, mask, rng, config)
    return jitter_colour(image, rng, config), mask
