"""Class-balanced sampling: every class drawn about equally often, whatever its frequency."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch
from torch.utils.data import WeightedRandomSampler


def class_balanced_sampler(labels: Sequence[int], num_samples: int | None = None,
                           seed: int = 0) -> WeightedRandomSampler:
    """A sampler that draws each item with weight 1 / (its class's count), with replacement.

    Args:
        labels: class index of every dataset item, in dataset order.
        num_samples: draws per epoch; the dataset length by default.
        seed: seeds the sampler's own generator, so the draw order is reproducible.
    """
    if len(labels) == 0:
        raise ValueError("cannot sample from an empty dataset")
    counts = Counter(int(label) for label in labels)
    weights = torch.tensor([1.0 / counts[int(label)] for label in labels], dtype=torch.double)
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True,
                                 generator=generator)
