"""Models: the U-Net lesion segmenter, the fusion classifier, their losses and weight sources."""

from .backbones import create_backbone
from .fusion import FusionClassifier, FusionConfig, backbone_parameters, freeze_backbones
from .losses import DiceBCELoss, soft_dice_loss
from .segmenter import SegmenterConfig, create_segmenter
from .weights import (
    WEIGHTS_PACKAGES,
    LoadReport,
    WeightsMismatch,
    WeightsUnavailable,
    load_weights,
    normalisation_for,
)

__all__ = [
    "WEIGHTS_PACKAGES",
    "DiceBCELoss",
    "FusionClassifier",
    "FusionConfig",
    "LoadReport",
    "SegmenterConfig",
    "WeightsMismatch",
    "WeightsUnavailable",
    "backbone_parameters",
    "create_backbone",
    "create_segmenter",
    "freeze_backbones",
    "load_weights",
    "normalisation_for",
    "soft_dice_loss",
]
