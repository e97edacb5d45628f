"""Tests for bench/clinic_colour_probe.py: one affine L*a*b* map per clinic onto the training set's
colour statistics."""

from __future__ import annotations

import numpy as np
import pytest

from clinic_colour_probe import stats, to_lab, transfer


@pytest.fixture()
def clinic() -> np.ndarray:
    """A clinic whose camera adds a bluish cast and little contrast: 12 small images."""
    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, size=(12, 24, 24, 3)).astype(np.float32)
    images[..., 2] += 40  # blue cast
    return np.clip(images, 0, 255).astype(np.uint8)


@pytest.fixture()
def reference() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return stats(rng.integers(0, 256, size=(12, 24, 24, 3)).astype(np.uint8))


def test_identity_leaves_every_pixel_as_it_was(clinic, reference):
    assert np.array_equal(transfer(clinic, stats(clinic), reference, "identity"), clinic)


def test_matching_mean_and_spread_gives_the_clinic_the_reference_statistics(clinic, reference):
    moved = stats(transfer(clinic, stats(clinic), reference, "lab_meanstd"))
    np.testing.assert_allclose(moved[0], reference[0], atol=2.0)  # 8-bit rounding and gamut clipping
    np.testing.assert_allclose(moved[1], reference[1], rtol=0.15)


def test_removing_the_cast_moves_only_the_colour_means(clinic, reference):
    before = stats(clinic)
    after = stats(transfer(clinic, before, reference, "lab_mean_ab"))
    np.testing.assert_allclose(after[0][1:], reference[0][1:], atol=2.0)
    assert abs(after[0][0] - before[0][0]) < 2.0  # lightness kept
    np.testing.assert_allclose(after[1][0], before[1][0], rtol=0.05)


def test_one_map_per_clinic_keeps_the_differences_between_its_lesions(clinic, reference):
    """Unlike per-image colour constancy, two images of one clinic that differed keep their order."""
    lesions = np.stack([np.clip(clinic[k].astype(int) - 40 + 8 * k, 0, 255) for k in range(12)]).astype(np.uint8)
    moved = transfer(lesions, stats(lesions), reference, "lab_meanstd")
    lightness = to_lab(moved)[..., 0].reshape(12, -1).mean(axis=1)
    assert np.all(np.diff(lightness) > 0)  # darker to lighter, as photographed
