"""Train/validation split stratified by class and grouped by lesion, patient or image.

No group (a lesion's images, or a patient's when no lesion id is recorded) is on both sides,
and each class's share in validation is close to the requested fraction. sklearn's
StratifiedGroupKFold only gives 1/k fractions, so this is a seeded greedy split: groups in
random order, each going to validation when that brings the per-class validation shares
closer to the target. (Largest-first order packs tighter but fills validation with a few big
patients, e.g. two thirds of ISIC 2020 rows and under 1 % of HAM10000's; random order keeps every
source near the fraction.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .sources import is_missing


def group_keys(frame: pd.DataFrame) -> pd.Series:
    """Per row ``lesion:<id>``, else ``patient:<id>``, else ``image:<id>``."""
    keys = "image:" + frame["image_id"].astype(str)
    for column, kind in (("patient_id", "patient"), ("lesion_id", "lesion")):
        if column in frame:
            present = ~frame[column].map(is_missing)
            keys = keys.where(~present, kind + ":" + frame[column].astype(str))
    return keys


def grouped_stratified_split(labels: pd.Series, groups: pd.Series, val_fraction: float,
                             seed: int = 0) -> np.ndarray:
    """Choose validation rows.

    Args:
        labels: class of each row.
        groups: group key of each row; a group goes wholly to one side.
        val_fraction: target share of every class in validation, in [0, 1).
        seed: the split is a pure function of the inputs and this seed.

    Returns:
        A boolean array, True for validation rows.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    classes, class_idx = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    group_names, group_idx = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    counts = np.zeros((len(group_names), len(classes)))
    np.add.at(counts, (group_idx, class_idx), 1.0)
    totals = counts.sum(axis=0)
    target = val_fraction * totals

    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(group_names))
    order = shuffled
    in_val = np.zeros(len(group_names), dtype=bool)
    val = np.zeros(len(classes))
    for g in order:
        # Squared shortfall per class, in shares of the class, so rare classes count as much.
        before = ((val - target) / totals) ** 2
        after = ((val + counts[g] - target) / totals) ** 2
        if after.sum() < before.sum():
            in_val[g] = True
            val += counts[g]
    return in_val[group_idx]
