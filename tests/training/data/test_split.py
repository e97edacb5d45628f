"""Grouped, stratified train/val split."""

import numpy as np
import pandas as pd
import pytest

from training.data.split import group_keys, grouped_stratified_split


def synthetic(seed: int = 0) -> pd.DataFrame:
    """About 600 rows: lesions of 1-4 images, three classes of very different sizes."""
    rng = np.random.default_rng(seed)
    rows = []
    for lesion in range(320):
        label = rng.choice(["nv", "mel", "df"], p=[0.7, 0.22, 0.08])
        for _ in range(rng.integers(1, 5)):
            rows.append({"label": label, "group": f"L{lesion}"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fraction", [0.3, 0.2, 0.5])
def test_no_group_on_both_sides_and_class_shares_near_the_fraction(fraction):
    frame = synthetic()
    is_val = grouped_stratified_split(frame["label"], frame["group"], fraction, seed=1)
    assert not set(frame["group"][is_val]) & set(frame["group"][~is_val])
    shares = frame.assign(val=is_val).groupby("label")["val"].mean()
    assert shares.between(fraction - 0.03, fraction + 0.03).all(), shares.to_dict()


def test_same_seed_same_split_other_seed_other_split():
    frame = synthetic()
    a = grouped_stratified_split(frame["label"], frame["group"], 0.3, seed=5)
    b = grouped_stratified_split(frame["label"], frame["group"], 0.3, seed=5)
    c = grouped_stratified_split(frame["label"], frame["group"], 0.3, seed=6)
    assert (a == b).all() and (a != c).any()


def test_zero_fraction_puts_everything_in_train():
    frame = synthetic()
    assert not grouped_stratified_split(frame["label"], frame["group"], 0.0).any()


def test_fraction_of_one_is_refused():
    with pytest.raises(ValueError, match=r"val_fraction must lie in \[0, 1\), got 1.0"):
        grouped_stratified_split(pd.Series(["a"]), pd.Series(["g"]), 1.0)


def test_group_is_lesion_else_patient_else_image():
    frame = pd.DataFrame({"image_id": ["I1", "I2", "I3", "I4"],
                          "lesion_id": ["L1", np.nan, np.nan, "unknown"],
                          "patient_id": ["P1", "P1", np.nan, np.nan]})
    assert group_keys(frame).tolist() == ["lesion:L1", "patient:P1", "image:I3", "image:I4"]
