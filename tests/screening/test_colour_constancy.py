"""Shades of Gray colour constancy and the manifest's preprocessing steps."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from screening.preprocess import apply_preprocessing, preprocessing_problems, shades_of_gray


def _lesion(rng: np.random.Generator) -> np.ndarray:
    skin = np.full((48, 48, 3), (200, 150, 130), np.float32)
    skin[16:32, 16:32] = (90, 50, 40)
    return np.clip(skin + rng.normal(0, 6, skin.shape), 0, 255).astype(np.uint8)


def _chromaticity(image: np.ndarray) -> np.ndarray:
    pixels = image.astype(np.float64) + 1.0
    return pixels / pixels.sum(axis=-1, keepdims=True)


def test_the_same_lesion_under_two_lights_comes_out_alike():
    lesion = _lesion(np.random.default_rng(0))
    warm = np.clip(lesion * np.array([1.15, 1.0, 0.75]), 0, 255).astype(np.uint8)
    cold = np.clip(lesion * np.array([0.8, 0.95, 1.2]), 0, 255).astype(np.uint8)
    # Colour, not brightness, is what the illuminant changes and what must come out alike.
    before = np.abs(_chromaticity(warm) - _chromaticity(cold)).mean()
    after = np.abs(_chromaticity(shades_of_gray(warm)) - _chromaticity(shades_of_gray(cold))).mean()
    assert before > 0.05 and after < before / 4


def test_a_neutral_image_is_left_alone_and_a_cast_becomes_neutral():
    grey = np.full((8, 8, 3), 120, np.uint8)
    assert np.array_equal(shades_of_gray(grey), grey)
    cast = np.zeros((8, 8, 3), np.uint8) + np.array([200, 100, 50], np.uint8)
    out = shades_of_gray(cast).reshape(-1, 3).mean(axis=0)
    assert np.ptp(out) <= 1


def test_batches_are_corrected_image_by_image():
    rng = np.random.default_rng(1)
    images = np.stack([_lesion(rng), np.clip(_lesion(rng) * [1.2, 1.0, 0.7], 0, 255).astype(np.uint8)])
    batch = shades_of_gray(images)
    assert np.array_equal(batch[0], shades_of_gray(images[0]))
    assert np.array_equal(batch[1], shades_of_gray(images[1]))


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(3))),
       st.floats(1.0, 16.0))
def test_any_image_keeps_its_shape_and_type(image, power):
    out = shades_of_gray(image, power)
    assert out.shape == image.shape and out.dtype == np.uint8


def test_black_image_does_not_divide_by_zero():
    black = np.zeros((4, 4, 3), np.uint8)
    assert np.array_equal(shades_of_gray(black), black)


def test_steps_apply_in_order_and_none_is_identity():
    image = _lesion(np.random.default_rng(2))
    assert apply_preprocessing(image, []) is image
    assert np.array_equal(apply_preprocessing(image, [{"name": "shades_of_gray", "power": 6}]),
                          shades_of_gray(image, 6))
    with pytest.raises(ValueError, match="unknown preprocessing step 'sharpen'"):
        apply_preprocessing(image, [{"name": "sharpen"}])


@pytest.mark.parametrize("steps, message", [
    ("shades_of_gray", "must be a list"),
    ([{"name": "white_patch"}], "preprocessing[0]: unknown step 'white_patch'"),
    ([{"name": "shades_of_gray", "power": 0.5}], "preprocessing[0].power: expected a number in [1, 64]"),
    ([{"name": "shades_of_gray", "power": "6"}], "preprocessing[0].power"),
    ([{"name": "shades_of_gray", "power": float("nan")}], "preprocessing[0].power"),
    ([{"name": "shades_of_gray", "gamma": 2}], "unknown key(s) gamma"),
])
def test_bad_steps_are_named(steps, message):
    problems = preprocessing_problems(steps)
    assert problems and message in problems[0]


def test_good_steps_have_no_problems():
    assert preprocessing_problems([]) == []
    assert preprocessing_problems([{"name": "shades_of_gray", "power": 6}]) == []
