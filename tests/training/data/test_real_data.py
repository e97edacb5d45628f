"""The index builder and datasets on the real tables in ../shared/data (skipped when absent)."""

from collections import Counter
from pathlib import Path

import pytest

from screening.metadata import DEFAULT_VOCABULARY
from training.data.dataset import ClassificationDataset, SegmentationDataset
from training.data.prepare import build_index

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
ISIC_METADATA = SHARED_DATA / "isic_metadata"
HAM_DEV = SHARED_DATA / "ham10000_dev"

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real data not found at {SHARED_DATA}"),
]


def val_shares(index):
    return index.assign(val=index["split"] == "val").groupby("label")["val"].mean()


def test_full_merge_of_ham_2017_2019_2020():
    prepared = build_index([ISIC_METADATA], "ham7", seed=0)
    index, report = prepared.index, prepared.report
    assert [(s.name, s.rows) for s in report.sources] == [
        ("isic_metadata/HAM10000_metadata.csv (ham10000)", 7036),
        ("isic_metadata/ISIC-2017_Training_Part3_GroundTruth.csv (isic2017)", 2000),
        ("isic_metadata/ISIC-2017_Validation_Part3_GroundTruth.csv (isic2017)", 150),
        ("isic_metadata/ISIC_2019_Training_GroundTruth.csv (isic2019)", 22352),
        ("isic_metadata/ISIC_2020_Training_GroundTruth.csv (isic2020)", 33126),
    ]
    assert report.sources[-1].unclassified == Counter({"unk": 27126})
    # ISIC 2019 holds every HAM10000 and ISIC 2017 image (1,431 of the latter as _downsampled).
    assert dict(report.dedup.removed) == {("isic2019", "ham10000"): 7028, ("ham10000", "isic2019"): 8,
                                          ("isic2017", "isic2019"): 2150}
    # 418 of the 425 listed ISIC 2020 pairs are 'unknown' diagnoses, already left out.
    assert report.listed_duplicates == 7
    # HAM10000 akiec includes Bowen's disease, which ISIC 2019 calls SCC: same ham7 class.
    assert (report.dedup.diagnosis_conflicts, report.dedup.label_conflicts) == (140, 0)
    assert len(index) == 7036 + 2150 + 22352 + 33126 - 27126 - 9186 - 7 == 28345
    assert index["image_id"].is_unique and not report.unknown_sites
    assert report.groups_on_both_sides == 0
    assert val_shares(index).between(0.28, 0.32).all()
    assert val_shares(index.assign(label=index["source"])).between(0.28, 0.32).all()


def test_ham10000_dev_labels_grouped_split():
    prepared = build_index([HAM_DEV / "labels.csv"], "ham7", seed=0)
    index = prepared.index
    assert len(index) == 7036 and index["lesion_id"].nunique() == 5230
    assert (index.groupby("lesion_id")["split"].nunique() == 1).all()
    assert val_shares(index).between(0.27, 0.33).all()
    assert index["label"].value_counts().to_dict() == {"nv": 4706, "mel": 785, "bkl": 774, "bcc": 357,
                                                       "akiec": 237, "vasc": 102, "df": 75}
    assert sum(prepared.report.groups.values()) == 5230 and prepared.report.groups_on_both_sides == 0


def test_ham10000_dev_labels_win_over_the_metadata_table():
    prepared = build_index([HAM_DEV / "labels.csv", ISIC_METADATA / "HAM10000_metadata.csv"], "ham7")
    assert dict(prepared.report.dedup.removed) == {("ham10000", "ham10000_dev"): 7036}
    assert prepared.index["mask_path"].notna().all()


def test_real_images_load_through_both_datasets():
    index = build_index([HAM_DEV / "labels.csv"], "ham7").index.head(2)
    image, mask = SegmentationDataset(index, (64, 64), (0.5,) * 3, (0.25,) * 3, augment=True)[0]
    assert tuple(image.shape) == (3, 64, 64) and 0.0 < float(mask.mean()) < 1.0
    item = ClassificationDataset(index, (64, 64), (0.5,) * 3, (0.25,) * 3, DEFAULT_VOCABULARY,
                                 ["nv", "mel", "bkl", "bcc", "akiec", "vasc", "df"])[1]
    assert item["label"] == 2 and float(item["meta"].sum()) == 3.0


ISIC_EXTRA = SHARED_DATA / "isic_extra"
HOLDOUTS = ("isic_archive_uda1", "isic2017_256px", "isic2017_fullres_800px")


def test_the_starter_recipes_index_is_the_shipped_bundles_and_keeps_every_lesion_on_one_side(tmp_path):
    """What the published figures rest on: `make starter-bundle`'s index, rebuilt from ../shared."""
    import json

    from training.card import data_sha256

    sources = [HAM_DEV / "labels.csv", *sorted(ISIC_EXTRA.glob("*/labels.csv"))]
    prepared = build_index(sources, "ham7", val_fraction=0.1, test_fraction=0.15, holdout_sources=HOLDOUTS, seed=0)
    index = prepared.index
    out = tmp_path / "index.csv"
    index.to_csv(out, index=False)
    shipped = json.loads((Path(__file__).resolve().parents[3] / "engines" / "starter" / "manifest.json").read_text())
    assert data_sha256(out) == shipped["training"]["data_index_sha256"]  # the very index it was trained on
    assert index["image_id"].is_unique and prepared.report.groups_on_both_sides == 0
    for key in ("lesion_id", "patient_id"):
        known = index[index[key].astype(str).str.len() > 0].dropna(subset=[key])
        assert (known.groupby(key)["split"].nunique() == 1).all(), f"a {key} in two splits"
    # The held-out sources are external whole; what else is external shares a lesion with them.
    assert set(index.loc[index["source"].isin(HOLDOUTS), "split"]) == {"external"}
    linked = index[(index["split"] == "external") & ~index["source"].isin(HOLDOUTS)]
    held_lesions = set(index.loc[index["source"].isin(HOLDOUTS), "lesion_id"].dropna())
    assert set(linked["lesion_id"]) <= held_lesions
    # The split does not depend on the order the sources are given in.
    again = build_index(sources[::-1], "ham7", val_fraction=0.1, test_fraction=0.15, holdout_sources=HOLDOUTS,
                        seed=0).index
    assert again.set_index("image_id")["split"].sort_index().equals(index.set_index("image_id")["split"].sort_index())
