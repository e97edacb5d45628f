"""The lesion segmenter: an smp U-Net with one output channel of logits.

For fast tests use ``SegmenterConfig(encoder="tu-test_efficientnet",
decoder_channels=(16, 16, 16, 16, 16))`` at 64x64 px: about 130k parameters (timm's
``test_efficientnet``), small enough for unit tests to build, run and export it on a CPU.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import segmentation_models_pytorch as smp
from torch import nn

from .backbones import check_timm_name
from .weights import (
    WeightsUnavailable,
    hub_unavailable_message,
    load_weights,
    normalisation_for,
    weights_kind,
)

TIMM_PREFIX = "tu-"


@dataclass
class SegmenterConfig:
    """How to build (and train) the lesion segmenter."""

    encoder: str = "resnet34"  # any smp encoder name, or "tu-<timm name>" for a timm backbone
    weights: str | None = None  # encoder weights spec: None/"none", "hub", "package:<name>" or a path
    encoder_depth: int = 5  # number of encoder stages fed to the decoder
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)  # one width per decoder stage
    bce_weight: float = 0.0  # training loss = soft Dice + bce_weight * BCE (see losses.py)


def check_encoder_name(name: str) -> None:
    """Raise ValueError naming close matches when neither smp nor timm knows the encoder."""
    if name.startswith(TIMM_PREFIX):
        check_timm_name(name[len(TIMM_PREFIX):])
        return
    names = smp.encoders.get_encoder_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(f"smp has no encoder named {name!r}; {hint}"
                         f"any timm backbone works as 'tu-<timm name>'")


def _hub_weights(encoder: str) -> str | bool:
    # smp wants True for timm encoders (the tag in the name picks the variant), a name otherwise.
    return True if encoder.startswith(TIMM_PREFIX) else "imagenet"


def _timm_module(unet: smp.Unet, encoder: str) -> nn.Module:
    """The module whose keys follow the timm / torchvision names of the encoder."""
    # smp keeps a timm encoder's model under `.model`; its own encoders are the module itself.
    return unet.encoder.model if encoder.startswith(TIMM_PREFIX) else unet.encoder


def create_segmenter(cfg: SegmenterConfig) -> nn.Module:
    """An smp U-Net mapping (N, 3, H, W) normalised images to (N, 1, H, W) lesion logits.

    H and W must be multiples of 2**encoder_depth. The model carries ``normalisation``
    (mean, std) for the manifest.

    Raises:
        ValueError: unknown encoder name.
        WeightsUnavailable: the weights cannot be obtained here (offline hub, missing file).
        WeightsMismatch: the weights do not fit the encoder.
    """
    check_encoder_name(cfg.encoder)
    kind = weights_kind(cfg.weights)
    build = dict(encoder_name=cfg.encoder, encoder_depth=cfg.encoder_depth,
                 decoder_channels=tuple(cfg.decoder_channels), in_channels=3, classes=1,
                 activation=None)
    if kind == "hub":
        try:
            unet = smp.Unet(encoder_weights=_hub_weights(cfg.encoder), **build)
        # KeyError: smp has no "imagenet" weights for this encoder (the name was checked).
        except (OSError, RuntimeError, KeyError) as exc:
            raise WeightsUnavailable(hub_unavailable_message(cfg.encoder, exc)) from exc
    else:
        unet = smp.Unet(encoder_weights=None, **build)
        if kind != "none":
            load_weights(_timm_module(unet, cfg.encoder), cfg.weights, architecture=cfg.encoder)
    unet.normalisation = normalisation_for(cfg.encoder, cfg.weights)
    return unet
