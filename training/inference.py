"""Loading trained models from checkpoints and running them the way the runtime will."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from screening.preprocess import normalise

from .common import load_checkpoint
from .config import from_dict
from .models.ensemble import ProbabilityMean
from .models.fusion import FusionClassifier, FusionConfig
from .models.segmenter import SegmenterConfig, create_segmenter


class SegmenterWithSigmoid(torch.nn.Module):
    """The exported segmenter: image -> lesion probability, so every backend gets the same map."""

    def __init__(self, segmenter: torch.nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.segmenter(image))


def segmenter_state(model_cfg: SegmenterConfig, mean: Sequence[float], std: Sequence[float]) -> dict:
    """What a segmenter checkpoint records beside its weights to be rebuilt anywhere."""
    return {"model_config": asdict(model_cfg), "mean": list(mean), "std": list(std)}


def classifier_state(model_cfg: FusionConfig, mean, std, meta_dim: int, class_names: list[str]) -> dict:
    return {"model_config": asdict(model_cfg), "mean": list(mean), "std": list(std),
            "meta_dim": meta_dim, "class_names": list(class_names)}


def load_segmenter(path: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained segmenter (eval mode, no pretrained download) from its checkpoint."""
    state = load_checkpoint(path)
    cfg = from_dict(SegmenterConfig, {**state["model_config"], "weights": None})
    model = create_segmenter(cfg)
    model.load_state_dict(state["model"])
    return model.eval(), state


def load_classifier(path: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained classifier, or an ensemble of them (training/ensemble.py), in eval mode."""
    state = load_checkpoint(path)
    if "members" in state:
        members = [_fusion(member["model_config"], member["model"], state) for member in state["members"]]
        return ProbabilityMean(members).eval(), state
    return _fusion(state["model_config"], state["model"], state).eval(), state


def _fusion(model_config: dict, weights: dict, state: dict) -> FusionClassifier:
    cfg = from_dict(FusionConfig, {**model_config, "image_weights": None, "mask_weights": None})
    model = FusionClassifier(cfg, meta_dim=state["meta_dim"], num_classes=len(state["class_names"]))
    model.load_state_dict(weights)
    return model


def batched(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), batch_size):
        yield items[start:start + batch_size]


@torch.no_grad()
def predict_mask_probabilities(model: torch.nn.Module, images: np.ndarray, mean, std,
                               device: torch.device) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, H, W) lesion probabilities."""
    batch = torch.from_numpy(normalise(images, mean, std)).to(device)
    return torch.sigmoid(model(batch))[:, 0].float().cpu().numpy()
