"""De-duplication across sources and of listed duplicate pairs."""

import numpy as np
import pandas as pd

from training.data.dedup import drop_cross_source_duplicates, drop_listed_duplicates
from training.data.sources import SOURCE_COLUMNS


def rows(*records: dict) -> pd.DataFrame:
    return pd.DataFrame([{c: r.get(c, np.nan) for c in SOURCE_COLUMNS} for r in records])


def test_richer_row_wins_then_preferred_source_and_order_is_kept():
    frame = rows(
        {"image_id": "A", "source": "isic2017", "diagnosis": "nv", "age": "50"},
        {"image_id": "B", "source": "isic2019", "diagnosis": "scc", "age": "80", "site": "head/neck"},
        {"image_id": "A", "source": "isic2019", "diagnosis": "nv", "age": "50", "site": "back"},
        {"image_id": "B", "source": "ham10000", "diagnosis": "akiec", "age": "80", "site": "neck"},
        {"image_id": "C", "source": "isic2020", "diagnosis": "mel"},
    )
    kept, report = drop_cross_source_duplicates(frame)
    assert kept[["image_id", "source"]].values.tolist() == [["A", "isic2019"], ["B", "ham10000"], ["C", "isic2020"]]
    assert report.removed == {("isic2017", "isic2019"): 1, ("isic2019", "ham10000"): 1}
    assert report.total == 2 and report.diagnosis_conflicts == 1


def test_label_conflicts_are_counted_when_labels_exist():
    frame = rows({"image_id": "A", "source": "ham10000", "diagnosis": "akiec"},
                 {"image_id": "A", "source": "isic2019", "diagnosis": "scc"}).assign(label=["akiec", "other"])
    _, report = drop_cross_source_duplicates(frame)
    assert (report.diagnosis_conflicts, report.label_conflicts) == (1, 1)


def test_second_of_a_listed_pair_goes_only_while_the_first_stays():
    frame = rows({"image_id": "A1"}, {"image_id": "A2"}, {"image_id": "B2"}, {"image_id": "C"})
    kept, dropped = drop_listed_duplicates(frame, [("A1", "A2"), ("B1", "B2")])
    assert kept["image_id"].tolist() == ["A1", "B2", "C"] and dropped == 1
