"""Class-balanced sampling: rare classes drawn more often than their frequency.

``power`` interpolates between the data's own frequencies (0) and every class equally often (1).
Full balancing shows a 7-class HAM10000 model one nevus in seven draws, so an epoch sees only a
fraction of the most varied class; a power below 1 keeps more of it while still lifting the
rare malignant classes.

``groups`` with ``group_power`` does the same across the images' sources: when one clinic
ships most of the training images (the starter's 84 px thumbnails of two clinics are 58 % of
them), a group power above 0 draws the smaller sources more often, so that the model does not
learn mostly one camera. Sources differ in their class mix, so the two are not multiplied per
image (a small source rich in melanomas would then take far more than its share, and the
classes would no longer be balanced): each source gets its share of the draws, and within it
the classes are balanced by ``power``.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch
from torch.utils.data import WeightedRandomSampler


def class_balanced_sampler(labels: Sequence[int], num_samples: int | None = None,
                           seed: int = 0, power: float = 1.0, groups: Sequence[str] | None = None,
                           group_power: float = 0.0) -> WeightedRandomSampler:
    """A sampler that draws each item with weight count(its class) ** -power, with replacement;
    with groups and a group power above 0, group by group (see the module docstring).

    Args:
        labels: class index of every dataset item, in dataset order.
        num_samples: draws per epoch; the dataset length by default.
        seed: seeds the sampler's own generator, so the draw order is reproducible.
        power: 1 draws every class equally often, 0 as often as it occurs, 0.5 in proportion
            to the square root of its count.
        groups: the group (e.g. source) of every item, in dataset order; None ignores groups.
        group_power: as ``power``, across groups: 0 ignores them, 1 draws every group equally
            often, 0.5 in proportion to the square root of its size. Above 0, ``power`` balances
            the classes within each group.
    """
    if len(labels) == 0:
        raise ValueError("cannot sample from an empty dataset")
    for name, value in (("sampling power", power), ("group sampling power", group_power)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if groups is not None and len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups for {len(labels)} labels")
    if groups is None or group_power == 0.0:
        counts = Counter(int(label) for label in labels)
        weights = [counts[int(label)] ** -power for label in labels]
    else:
        weights = _group_weights([int(label) for label in labels], list(groups), power, group_power)
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(torch.tensor(weights, dtype=torch.double), num_samples or len(labels),
                                 replacement=True, generator=generator)


def _group_weights(labels: list[int], groups: list[str], power: float, group_power: float) -> list[float]:
    """Weights that give group g the share n_g^(1 - group_power) / sum, and class c within it the
    share n_gc^(1 - power) / sum over its classes; an item's weight is its cell's share over the
    cell's size."""
    sizes = Counter(groups)
    cells = Counter(zip(groups, labels))
    within = Counter()  # group -> sum over its classes of n_gc^(1 - power)
    for (group, _), count in cells.items():
        within[group] += count ** (1.0 - power)
    return [sizes[g] ** (1.0 - group_power) * cells[g, c] ** -power / within[g] for g, c in zip(groups, labels)]
