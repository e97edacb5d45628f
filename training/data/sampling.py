"""Class-balanced sampling: rare classes drawn more often than their frequency.

``power`` interpolates between the data's own frequencies (0) and every class equally often (1).
Full balancing shows a 7-class HAM10000 model one nevus in seven draws, so an epoch sees only a
fraction of the most varied class; a power below 1 keeps more of it while still lifting the
rare malignant classes.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch
from torch.utils.data import WeightedRandomSampler


def class_balanced_sampler(labels: Sequence[int], num_samples: int | None = None,
                           seed: int = 0, power: float = 1.0) -> WeightedRandomSampler:
    """A sampler that draws each item with weight count(its class) ** -power, with replacement.

    Args:
        labels: class index of every dataset item, in dataset order.
        num_samples: draws per epoch; the dataset length by default.
        seed: seeds the sampler's own generator, so the draw order is reproducible.
        power: 1 draws every class equally often, 0 as often as it occurs, 0.5 in proportion
            to the square root of its count.
    """
    if len(labels) == 0:
        raise ValueError("cannot sample from an empty dataset")
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"sampling power must be between 0 and 1, got {power}")
    counts = Counter(int(label) for label in labels)
    weights = torch.tensor([counts[int(label)] ** -power for label in labels], dtype=torch.double)
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True,
                                 generator=generator)
