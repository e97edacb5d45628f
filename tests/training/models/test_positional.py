"""The fixed 2-D sine-cosine position embedding of feature-map tokens."""

from __future__ import annotations

import pytest
import torch

from training.models.positional import sincos_2d


def test_shape_and_row_major_order():
    embedding = sincos_2d(2, 3, 8)
    assert embedding.shape == (6, 8)
    # Token 4 is row 1, column 1: x and y quarters hold sin/cos of 1 * omega, omega = (1, 0.01).
    omega = torch.tensor([1.0, 0.01])
    expected_x = torch.cat([omega.sin(), omega.cos()])
    torch.testing.assert_close(embedding[4], torch.cat([expected_x, expected_x]))
    # Token 0 is the origin: sin 0 = 0 and cos 0 = 1 in both halves.
    torch.testing.assert_close(embedding[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))


def test_every_position_gets_its_own_vector():
    embedding = sincos_2d(7, 7, 256)
    distances = torch.cdist(embedding, embedding)
    assert distances[~torch.eye(49, dtype=torch.bool)].min() > 0.1


def test_dim_must_split_into_four_quarters():
    with pytest.raises(ValueError, match="a 2-D sine-cosine embedding needs dim divisible by 4, got 30"):
        sincos_2d(2, 2, 30)
