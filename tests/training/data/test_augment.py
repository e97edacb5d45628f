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


# -- acquisition augmentation: other cameras, same lesion ------------------------------------------

from dataclasses import replace  # noqa: E402

from training.data.augment import (ACQUISITION_AUGMENT, AUGMENT_PRESETS, add_hair, add_vignette,  # noqa: E402
                                   degrade_optics, shift_white_balance)


def test_default_preset_draws_no_acquisition_change():
    image, mask = blob_pair()
    rng = np.random.default_rng(0)
    assert AUGMENT_PRESETS["default"].jpeg == 0 and AUGMENT_PRESETS["default"].vignette == 0
    out, out_mask = augment_pair(image, mask, rng, STILL)
    assert np.array_equal(out, image) and np.array_equal(out_mask, mask)


def test_acquisition_moves_pixels_but_never_the_mask():
    image, mask = blob_pair()
    still_geometry = replace(ACQUISITION_AUGMENT, rotate=False, hflip=0.0, vflip=0.0, scale=(1.0, 1.0))
    changed = 0
    for seed in range(20):
        out, out_mask = augment_pair(image, mask, np.random.default_rng(seed), still_geometry)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out_mask, mask)
        changed += int(np.abs(out.astype(int) - image.astype(int)).mean() > 2)
    assert changed >= 15


def test_white_balance_changes_channel_ratios():
    image, _ = blob_pair()
    config = replace(ACQUISITION_AUGMENT, gamma=0.0, channel_gain=0.3)
    ratios = {tuple(np.round(shift_white_balance(image, np.random.default_rng(s), config)[0, 0] / image[0, 0], 2))
              for s in range(5)}
    assert len(ratios) == 5


def test_vignette_darkens_corners_and_keeps_the_centre():
    image = np.full((64, 64, 3), 200, np.uint8)
    out = add_vignette(image, np.random.default_rng(0))
    assert out[0, 0].max() < 60 and out[32, 32].min() >= 195


def test_hair_draws_dark_thin_strokes():
    image = np.full((64, 64, 3), 200, np.uint8)
    out = add_hair(image, np.random.default_rng(3))
    dark_share = float((out.max(axis=-1) < 120).mean())
    assert 0.0 < dark_share < 0.25


def test_thumbnail_resolution_loses_detail():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)
    config = replace(ACQUISITION_AUGMENT, downscale=1.0, blur=0.0, jpeg=0.0)
    out = degrade_optics(image, rng, config)
    assert out.shape == image.shape and out.std() < image.std() * 0.8
