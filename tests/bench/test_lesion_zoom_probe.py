"""Tests for bench/lesion_zoom_probe.py: small lesions cropped from the photograph's own pixels."""

from __future__ import annotations

import numpy as np
import pytest

from lesion_zoom_probe import crop, zoom_window


def lesion_mask(top: int, left: int, side: int, frame: int = 160) -> np.ndarray:
    mask = np.zeros((frame, frame), np.uint8)
    mask[top:top + side, left:left + side] = 255
    return mask


def test_a_lesion_that_fills_enough_of_the_frame_or_none_is_left_alone():
    assert zoom_window(lesion_mask(20, 20, 100), below=0.15, target=0.25) is None  # 39 % of the frame
    assert zoom_window(np.zeros((160, 160), np.uint8), below=0.15, target=0.25) is None


def test_a_small_lesion_gets_a_window_in_which_it_covers_the_target_share():
    centre_row, centre_col, side = zoom_window(lesion_mask(70, 70, 20), below=0.15, target=0.25)
    assert (centre_row, centre_col) == pytest.approx((0.5, 0.5))
    assert (20 / 160) ** 2 / side ** 2 == pytest.approx(0.25, rel=0.01)


def test_the_window_never_cuts_the_lesion_and_stays_inside_the_frame():
    mask = np.zeros((160, 160), np.uint8)
    mask[2:6, 0:60] = 255  # a thin lesion along the top edge: 0.9 % of the frame, 60 px wide
    centre_row, centre_col, side = zoom_window(mask, below=0.15, target=0.25)
    assert side >= 1.3 * 60 / 160
    assert centre_row - side / 2 >= 0 and centre_col - side / 2 >= 0
    image = np.arange(600 * 800 * 3, dtype=np.int64).reshape(600, 800, 3)
    cut = crop(image, (centre_row, centre_col, side))
    assert cut.shape[0] / cut.shape[1] == pytest.approx(600 / 800, rel=0.01)  # the photograph's aspect ratio
    assert np.array_equal(cut[0, 0], image[0, 0])  # moved inside the frame at its corner, not shrunk


def test_the_crop_is_the_photographs_own_pixels_at_full_resolution():
    image = np.random.default_rng(0).integers(0, 256, size=(1200, 1600, 3), dtype=np.uint8)
    cut = crop(image, (0.5, 0.5, 0.25))
    assert cut.shape == (300, 400, 3)
    assert np.array_equal(cut, image[450:750, 600:1000])


def test_a_crop_of_a_small_photograph_is_enlarged_to_the_input_size_not_refused():
    from lesion_zoom_probe import at_least

    small = np.zeros((60, 80, 3), np.uint8)
    assert at_least(small, 160).shape == (160, 213, 3)
    big = np.zeros((300, 400, 3), np.uint8)
    assert at_least(big, 160) is big
