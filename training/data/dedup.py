"""De-duplication of images that several sources ship, and of ISIC 2020's listed duplicate pairs.

ISIC 2019 re-distributes all of HAM10000 and ISIC 2017, so a merged index would otherwise count
those images twice (and could put the copies on both sides of the split). Of the rows that
share an image_id we keep the one with the most recorded fields (image and mask paths, age,
sex, site, lesion and patient ids); ties go to the earlier source in ``SOURCE_PREFERENCE``
(curated labels CSVs first, then HAM10000, whose site names are finer than ISIC 2019's).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

# Curated labels CSVs (sources named by their folder, e.g. ham10000_dev) rank with "labels".
SOURCE_PREFERENCE = ("labels", "ham10000", "isic2019", "isic2020", "isic2017")
RICHNESS_COLUMNS = ("image_path", "mask_path", "age", "sex", "site", "lesion_id", "patient_id")


def source_preference(source: str) -> int:
    """Rank of a source in ``SOURCE_PREFERENCE``; a labels CSV is named by its folder and ranks first."""
    return SOURCE_PREFERENCE.index(source) if source in SOURCE_PREFERENCE else 0


@dataclass
class DedupReport:
    """What de-duplication removed."""

    removed: Counter = field(default_factory=Counter)  # (dropped source, kept source) -> rows
    diagnosis_conflicts: int = 0  # dropped copies whose diagnosis differed from the kept row's
    label_conflicts: int = 0  # ... whose class differed (only when a label column exists)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def drop_cross_source_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, DedupReport]:
    """Keep one row per image_id: the richest, then the most preferred source.

    Args:
        frame: rows in the common source columns, possibly with a ``label`` column.

    Returns:
        The kept rows in their original order, and a report of what was dropped.
    """
    ranked = frame.assign(
        _order=range(len(frame)),
        _rich=-frame[list(RICHNESS_COLUMNS)].notna().sum(axis=1),
        _pref=frame["source"].map(source_preference),
    ).sort_values(["image_id", "_rich", "_pref", "_order"], kind="stable")
    first = ~ranked["image_id"].duplicated()
    kept_rows = ranked[first].set_index("image_id")
    dropped = ranked[~first]
    kept_for = kept_rows.loc[dropped["image_id"]]
    report = DedupReport(removed=Counter(zip(dropped["source"], kept_for["source"])))
    report.diagnosis_conflicts = int((dropped["diagnosis"].values != kept_for["diagnosis"].values).sum())
    if "label" in frame:
        report.label_conflicts = int((dropped["label"].values != kept_for["label"].values).sum())
    kept = ranked[first].sort_values("_order").drop(columns=["_order", "_rich", "_pref"])
    return kept.reset_index(drop=True), report


def drop_listed_duplicates(frame: pd.DataFrame, pairs: list[tuple[str, str]]) -> tuple[pd.DataFrame, int]:
    """Drop the second image of each listed pair whose first image is still in the frame.

    When the first was already left out (e.g. its diagnosis is in no class) the second is the
    only copy and stays.
    """
    present = set(frame["image_id"])
    drop = {second for first, second in pairs if first in present and first != second}
    mask = frame["image_id"].isin(drop)
    return frame[~mask].reset_index(drop=True), int(mask.sum())
