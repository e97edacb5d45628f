"""Paired image/mask augmentation on uint8 arrays, applied after the shared resize.

Geometry (flips, a rotation by any angle and a small scale, one affine warp) is applied to the
image and its mask alike, the mask with nearest neighbour so it keeps its values. Both use a
reflected border: a dermoscopy lesion has no canonical orientation, and a reflected image
corner must carry the reflected mask corner too, or the pair would disagree there. Colour
jitter (brightness, contrast, hue) and the acquisition augmentations (white balance, gamma,
blur, thumbnail resolution, JPEG artefacts, dermatoscope vignetting, hairs) touch the image
only: they imitate other clinics' cameras, which move pixels but not the lesion. All randomness comes from the
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
    # Acquisition: what changes between clinics' cameras. Each is applied with its probability;
    # 0 switches it off (the default, so the 1.x recipe is unchanged).
    channel_gain: float = 0.0  # per-channel gain in [1 - g, 1 + g]: another white balance
    gamma: float = 0.0  # gamma in [1 - g, 1 + g]: another tone curve
    blur: float = 0.0  # probability of a Gaussian blur (sigma 0.3..1.2): focus, optics
    jpeg: float = 0.0  # probability of a JPEG round trip at quality 30..90
    downscale: float = 0.0  # probability of down- and up-scaling through 64..120 px (thumbnails)
    vignette: float = 0.0  # probability of dark round corners, as many dermatoscopes give
    hair: float = 0.0  # probability of drawing 1..8 dark hair-like curves


DEFAULT_AUGMENT = AugmentConfig()
# Starter 2.0: make one clinic's camera look like many (see docs/results.md for what each buys).
ACQUISITION_AUGMENT = AugmentConfig(brightness=0.15, contrast=0.2, hue=0.03, channel_gain=0.15, gamma=0.25,
                                    blur=0.25, jpeg=0.3, downscale=0.25, vignette=0.25, hair=0.15)
# An ensemble member that trusts absolute colour less: about twice acquisition's white balance,
# tone and hue range, and more thumbnails and blur, so it ranks by pattern and relative colour
# where the other members also read a camera's colour (docs/results.md, thirteenth session).
CAMERA_AUGMENT = AugmentConfig(brightness=0.2, contrast=0.3, hue=0.06, channel_gain=0.35, gamma=0.4,
                               blur=0.35, jpeg=0.3, downscale=0.4, vignette=0.25, hair=0.15)
AUGMENT_PRESETS = {"default": DEFAULT_AUGMENT, "acquisition": ACQUISITION_AUGMENT, "camera": CAMERA_AUGMENT}


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


def shift_white_balance(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Per-channel gains and a gamma curve: another camera's white balance and tone response."""
    pixels = image.astype(np.float32) / 255.0
    if config.gamma > 0:
        pixels = np.power(pixels, rng.uniform(1.0 - config.gamma, 1.0 + config.gamma))
    if config.channel_gain > 0:
        pixels = pixels * rng.uniform(1.0 - config.channel_gain, 1.0 + config.channel_gain, size=3)
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


def degrade_optics(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Blur, a thumbnail's lost resolution and JPEG artefacts, each with its probability."""
    height, width = image.shape[:2]
    if rng.random() < config.downscale:
        side = int(rng.integers(64, 121))
        small = cv2.resize(image, (min(side, width), min(side, height)), interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < config.blur:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.3, 1.2)))
    if rng.random() < config.jpeg:
        quality = int(rng.integers(30, 91))
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(image)


def add_vignette(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darken outside a circle, as the round field of view of many dermatoscopes does."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = (height - 1) / 2.0 + rng.uniform(-0.05, 0.05) * height, (width - 1) / 2.0
    radius = rng.uniform(0.45, 0.7) * np.hypot(height, width) / 2.0 * np.sqrt(2.0) / 1.2
    distance = np.hypot(yy - cy, xx - cx)
    softness = rng.uniform(0.02, 0.1) * radius
    keep = np.clip((radius - distance) / softness + 0.5, 0.0, 1.0)[..., None]
    return np.rint(image.astype(np.float32) * keep).astype(np.uint8)


def add_hair(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a few dark, thin, curved strokes: hairs the clinic did not shave or remove."""
    height, width = image.shape[:2]
    out = image.copy()
    colour = tuple(int(c) for c in rng.integers(10, 70, size=3))
    for _ in range(int(rng.integers(1, 9))):
        start = rng.uniform(0, 1, size=2) * (width, height)
        angle = rng.uniform(0, 2 * np.pi)
        bend = rng.uniform(-0.03, 0.03)
        length = rng.uniform(0.3, 1.0) * max(height, width)
        points = []
        for t in np.linspace(0.0, length, 12):
            angle += bend
            points.append(start + t * np.array([np.cos(angle), np.sin(angle)]))
        cv2.polylines(out, [np.round(np.array(points)).astype(np.int32)], False, colour,
                      thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    return out


def acquire(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """The acquisition augmentations of ``config``: another camera, light, lens and clinic."""
    if config.gamma > 0 or config.channel_gain > 0:
        image = shift_white_balance(image, rng, config)
    image = degrade_optics(image, rng, config)
    if rng.random() < config.vignette:
        image = add_vignette(image, rng)
    if rng.random() < config.hair:
        image = add_hair(image, rng)
    return image


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
    return acquire(jitter_colour(image, rng, config), rng, config), mask
