"""timm backbones created by name with their weights taken from a weights spec."""

from __future__ import annotations

import difflib

import timm
from torch import nn

from .weights import WeightsUnavailable, hub_unavailable_message, load_weights, weights_kind


def check_timm_name(name: str) -> None:
    """Raise ValueError naming close matches when timm has no model called ``name``."""
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise ValueError(f"timm has no backbone named {name!r}{hint}")


def create_backbone(name: str, weights: str | None, **timm_kwargs) -> nn.Module:
    """A timm model with weights from a weights spec (see ``weights.py``).

    Args:
        name: timm model name, optionally with a pretrained tag (``efficientnet_b3.ra2_in1k``).
        weights: ``None``/"none", "hub", "package:<name>" or a local state-dict path.
        **timm_kwargs: passed to ``timm.create_model`` (``num_classes``, ``global_pool``,
            ``in_chans``, ...); a checkpoint's stem is adapted to ``in_chans``.

    Returns:
        The model, in training mode as timm creates it.

    Raises:
        ValueError: timm does not know ``name``.
        WeightsUnavailable: the weights cannot be obtained here (offline hub, missing file).
        WeightsMismatch: the weights do not fit the model.
    """
    check_timm_name(name)
    kind = weights_kind(weights)
    if kind == "hub":
        try:
            return timm.create_model(name, pretrained=True, **timm_kwargs)
        # Offline hub lookups surface as OSError subclasses; timm raises RuntimeError for
        # models without a pretrained source.
        except (OSError, RuntimeError) as exc:
            raise WeightsUnavailable(hub_unavailable_message(name, exc)) from exc
    model = timm.create_model(name, pretrained=False, **timm_kwargs)
    if kind != "none":
        load_weights(model, weights, architecture=name)
    return model
