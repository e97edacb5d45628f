"""Class-balanced sampling: rare classes drawn more often than their frequency.

``power`` interpolates between the data's own frequencies (0) and every class equally often (1).
Full balancing shows a 7-class HAM10000 model one nevus in seven draws, so an epoch sees only a
fraction of the most varied class; a power below 1 keeps more of it while still lifting the
rare malignant classes.

``groups`` with ``group_power`` does the same across the images' sources: when one clinic
ships most of the training images (the starter's 84 px thumbnails of two clinics are 58 % of
them), a group power above 0 draws the smaller sources more often, so that the model does not
learn mostly one camera.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch
from torch.utils.data import WeightedRandomSampler


def class_balanced_sampler(labels: Sequence[int], num_samples: int | None = None,
                           seed: int = 0, power: float = 1.0, groups: Sequence[str] | None = None,
                           group_power: float = 0.0) -> WeightedRandomSampler:
    """A sampler that draws each item with weight count(its class) ** -power, times
    count(its group) ** -group_power when groups are given, with replacement.

    Args:
        labels: class index of every dataset item, in dataset order.
        num_samples: draws per epoch; the dataset length by default.
        seed: seeds the sampler's own generator, so the draw order is reproducible.
        power: 1 draws every class equally often, 0 as often as it occurs, 0.5 in proportion
            to the square root of its count.
        groups: the group (e.g. source) of every item, in dataset order; None ignores groups.
        group_power: as ``power``, across groups: 0 ignores them, 1 draws every group equally
            often (before the class weights), 0.5 in proportion to the square root of its size.
    """
    if len(labels) == 0:
        raise ValueError("cannot sample from an empty dataset")
    for name, value in (("sampling power", power), ("group sampling power", group_power)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if groups is not None and len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups for {len(labels)} labels")
    counts = Counter(int(label) for label in labels)
    weights = torch.tensor([counts[int(label)] ** -power for label in labels], dtype=torch.double)
    if groups is not None and group_power > 0.0:
        sizes = Counter(groups)
        weights *= torch.tensor([sizes[group] ** -group_power for group in groups], dtype=torch.double)
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True,
                                 generator=generator)
