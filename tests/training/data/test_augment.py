"""Paired augmentation keeps image and mask aligned."""

import cv2
import numpy as np
import pytest

from training.data.augment import AugmentConfig, augment_pair

STILL = AugmentConfig(rotate=False, hflip=0.0, vflip=0.0, scale=(1.0, 1.0), brightness=0.0,
                      contrast=0.0, hue=0.0)


def blob_pair(centre=(44, 18), radius=9) -> tuple[np.ndarray, np.ndarray]:
    """64x64 skin image with one dark disc off centre, and its 0/255 mask."""
    image = np.full((64, 64, 3), (205, 165, 140), dtype=np.uint8)
    mask = np.zeros((64, 64), dtype=np.uint8)
    cv2.circle(image, centre, radius, (50, 30, 25), thickness=-1)
    cv2.circle(mask, centre, radius, 255, thickness=-1)
    return image, mask


def dark(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) < 120


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("hflip, vflip", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_flips_move_image_and_mask_together(hflip, vflip):
    image, mask = blob_pair()
    config = AugmentConfig(**{**STILL.__dict__, "hflip": hflip, "vflip": vflip})
    out_image, out_mask = augment_pair(image, mask, np.random.default_rng(0), config)
    expected = mask[:, ::-1] if hflip else mask
    expected = expected[::-1] if vflip else expected
    assert np.array_equal(out_mask, expected)
    assert np.array_equal(dark(out_image), expected > 0)


@pytest.mark.parametrize("seed", range(12))
def test_full_augmentation_keeps_the_mask_on_the_blob(seed):
    image, mask = blob_pair()
    out_image, out_mask = augment_pair(image, mask, np.random.default_rng(seed))
    assert out_image.shape == image.shape and out_image.dtype == np.uint8
    assert set(np.unique(out_mask)) <= {0, 255}
    assert iou(dark(out_image), out_mask > 0) > 0.9


def test_rotation_takes_any_angle_about_the_centre():
    image, mask = blob_pair()
    config = AugmentConfig(**{**STILL.__dict__, "rotate": True})
    centre = np.array([31.5, 31.5])
    start = centroid(mask) - centre
    angles = []
    for seed in range(24):
        _, out_mask = augment_pair(image, mask, np.random.default_rng(seed), config)
        moved = centroid(out_mask) - centre
        assert abs(np.linalg.norm(moved) - np.linalg.norm(start)) < 1.0
        angles.append(np.degrees(np.arctan2(moved[1], moved[0])))
    # Angles spread over the whole circle, not a small range.
    assert np.ptp(angles) > 270


def test_colour_jitter_changes_the_image_only():
    image, mask = blob_pair()
    config = AugmentConfig(**{**STILL.__dict__, "brightness": 0.1, "contrast": 0.1, "hue": 0.02})
    changed = 0
    for seed in range(5):
        out_image, out_mask = augment_pair(image, mask, np.random.default_rng(seed), config)
        assert np.array_equal(out_mask, mask)
        diff = np.abs(out_image.astype(int) - image.astype(int))
        assert diff.mean() < 30  # mild
        changed += int(diff.max() > 0)
    assert changed == 5


def test_same_generator_state_same_result():
    image, mask = blob_pair()
    a = augment_pair(image, mask, np.random.default_rng(7))
    b = augment_pair(image, mask, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_size_mismatch_is_refused():
    image, mask = blob_pair()
    with pytest.raises(ValueError, match=r"image \(64, 64\) and mask \(32, 32\) differ in size"):
        augment_pair(image, mask[:32, :32], np.random.default_rng(0))
