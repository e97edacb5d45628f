"""Segmentation losses on logits: soft Dice, optionally plus binary cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean over images of 1 - (2 |P.T| + smooth) / (|P| + |T| + smooth), with P = sigmoid(logits).

    Dice is computed per image and then averaged, so a small lesion counts as much as a
    large one; ``smooth`` makes an empty prediction of an empty mask a perfect score (loss 0)
    and keeps the gradient finite.

    Args:
        logits: (N, 1, H, W) or (N, H, W) raw segmenter outputs.
        targets: same shape, lesion masks in [0, 1].
        smooth: additive smoothing of numerator and denominator.

    Returns:
        Scalar loss in [0, 1].
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    probs = torch.sigmoid(logits).flatten(1)
    targets = targets.to(probs.dtype).flatten(1)
    intersection = (probs * targets).sum(1)
    total = probs.sum(1) + targets.sum(1)
    return (1.0 - (2.0 * intersection + smooth) / (total + smooth)).mean()


class DiceBCELoss(nn.Module):
    """soft_dice_loss + bce_weight * binary cross-entropy, both on logits."""

    def __init__(self, bce_weight: float = 0.0, smooth: float = 1.0) -> None:
        super().__init__()
        if bce_weight < 0:
            raise ValueError(f"bce_weight must be >= 0, got {bce_weight}")
        self.bce_weight = bce_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = soft_dice_loss(logits, targets, self.smooth)
        if self.bce_weight:
            bce = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
            loss = loss + self.bce_weight * bce
        return loss
