"""Soft Dice (+ BCE) on hand-computable 2x2 masks."""

from __future__ import annotations

import math

import pytest
import torch

from training.models.losses import DiceBCELoss, soft_dice_loss

BIG = 100.0  # sigmoid(+-100) is 1 / 0 to float32 precision


def _mask(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(1, 1, 2, 2)


def _logits_for(mask: torch.Tensor) -> torch.Tensor:
    return (mask * 2 - 1) * BIG


def test_half_probability_on_a_full_mask():
    # P = 0.5 everywhere, T = 1 on 4 px: (2*2 + 1) / (2 + 4 + 1) = 5/7.
    loss = soft_dice_loss(torch.zeros(1, 1, 2, 2), _mask([1, 1], [1, 1]))
    assert loss.item() == pytest.approx(2 / 7, abs=1e-6)


def test_perfect_prediction_costs_nothing():
    target = _mask([1, 0], [1, 0])
    assert soft_dice_loss(_logits_for(target), target).item() == pytest.approx(0.0, abs=1e-6)


def test_disjoint_prediction():
    # Intersection 0, |P| + |T| = 4: 1 - (0 + 1) / (4 + 1).
    loss = soft_dice_loss(_logits_for(_mask([1, 1], [0, 0])), _mask([0, 0], [1, 1]))
    assert loss.item() == pytest.approx(0.8, abs=1e-6)


def test_empty_prediction_of_empty_mask_is_perfect():
    empty = _mask([0, 0], [0, 0])
    assert soft_dice_loss(_logits_for(empty), empty).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_is_averaged_per_image_not_pooled_over_the_batch():
    logits = torch.cat([_logits_for(_mask([1, 1], [0, 0])), _logits_for(_mask([1, 1], [0, 0]))])
    targets = torch.cat([_mask([1, 1], [0, 0]), _mask([0, 0], [1, 1])])
    # Per image: (0 + 0.8) / 2; pooled over the batch it would be 1 - 5/9.
    assert soft_dice_loss(logits, targets).item() == pytest.approx(0.4, abs=1e-6)


def test_bce_term_is_added_with_its_weight():
    loss = DiceBCELoss(bce_weight=0.5)(torch.zeros(1, 1, 2, 2), _mask([1, 1], [1, 1]))
    assert loss.item() == pytest.approx(2 / 7 + 0.5 * math.log(2), abs=1e-6)


def test_default_loss_is_pure_dice():
    target = _mask([1, 0], [0, 0])
    logits = torch.tensor([[[[0.3, -1.0], [2.0, 0.0]]]])
    assert DiceBCELoss()(logits, target).item() == pytest.approx(soft_dice_loss(logits, target).item())


def test_gradient_raises_lesion_logits_and_lowers_background_logits():
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    DiceBCELoss(bce_weight=1.0)(logits, _mask([1, 1], [0, 0])).backward()
    grad = logits.grad.flatten()
    assert (grad[:2] < 0).all() and (grad[2:] > 0).all()


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"logits \(1, 1, 2, 2\) and targets \(1, 2, 2\) differ in shape"):
        soft_dice_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))


def test_negative_bce_weight_is_refused():
    with pytest.raises(ValueError, match="bce_weight must be >= 0, got -1"):
        DiceBCELoss(bce_weight=-1)
