"""Tests for bench/backbone_probe.py's parts: variants, cost counting, resizing and the probes' classifier."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch

import backbone_probe
from colour_constancy_probe import linear_probe


def test_a_variant_is_a_lite_level_and_an_input_size():
    assert backbone_probe.parse_variant("1:240") == (1, 240)
    for bad in ("3:240", "1", "1:x", "1:8", "lite1:240"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected LEVEL:SIZE"):
            backbone_probe.parse_variant(bad)


def test_multiply_adds_count_every_convolution_and_linear_layer():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),  # 8x8 outputs of 8 channels, 3*3*3 each: 64*8*27
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 64*8*9
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 2))  # 2*8
    assert backbone_probe.multiply_adds(model, 8) == 64 * 8 * 27 + 64 * 8 * 9 + 16
    # Four times the pixels, four times the convolution cost; the linear head stays.
    assert backbone_probe.multiply_adds(model, 16) == 4 * (64 * 8 * 27 + 64 * 8 * 9) + 16


def test_smaller_inputs_are_resized_from_the_one_decode():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert backbone_probe.resized(pixels, 32) is pixels
    small = backbone_probe.resized(pixels, 16)
    assert small.shape == (2, 16, 16, 3) and small.dtype == np.uint8
    assert abs(float(small.mean()) - float(pixels.mean())) < 2  # area resizing keeps the mean


def test_the_linear_probe_ranks_separable_features():
    rng = np.random.default_rng(0)
    labels = np.array(["mel", "nv", "bcc", "bkl"] * 30)
    names = ["mel", "nv", "bcc", "bkl"]
    x = np.array([np.eye(4)[names.index(label)] * 3 for label in labels]) + rng.normal(0, 0.3, (len(labels), 4))
    risk, mel = linear_probe(x, pd.Series(labels), x)
    malignant = np.isin(labels, ["mel", "bcc"])
    assert risk[malignant].min() > risk[~malignant].max()  # risk sums the malignant classes
    assert mel[labels == "mel"].min() > mel[labels != "mel"].max()
