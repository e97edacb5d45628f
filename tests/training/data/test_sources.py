"""Source readers: format detection, companion tables and the diagnosis mapping of each format."""

from pathlib import Path

import pandas as pd
import pytest

from training.data.errors import DataError
from training.data.sources import (
    SOURCE_COLUMNS, Source, detect_format, parse_source_spec, read_duplicate_pairs, read_source,
    sources_in_directory,
)


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    assert list(frame.columns) == SOURCE_COLUMNS
    return frame.set_index("image_id")


@pytest.mark.parametrize("name, fmt", [
    ("HAM10000_metadata.csv", "ham10000"),
    ("ISIC-2017_Training_Part3_GroundTruth.csv", "isic2017"),
    ("ISIC-2017_Training_Data_metadata.csv", "isic2017_metadata"),
    ("ISIC_2019_Training_GroundTruth.csv", "isic2019"),
    ("ISIC_2019_Training_Metadata.csv", "isic2019_metadata"),
    ("ISIC_2020_Training_GroundTruth.csv", "isic2020"),
    ("ISIC_2020_Training_Duplicates.csv", "isic2020_duplicates"),
])
def test_format_is_detected_from_the_columns(fixtures, name, fmt):
    assert detect_format(fixtures / name) == fmt


def test_ham10000_rows(fixtures, tmp_path):
    frame = by_id(read_source(Source(fixtures / "HAM10000_metadata.csv", images_dir=tmp_path)))
    assert len(frame) == 9
    row = frame.loc["ISIC_0029417"]
    assert (row.diagnosis, row.age, row.sex, row.site, row.lesion_id, row.source) == \
        ("akiec", "80.0", "female", "neck", "HAM_0002644", "ham10000")
    assert row.image_path == str(tmp_path.absolute() / "ISIC_0029417.jpg")
    # "unknown" means not recorded: it becomes empty like any missing cell.
    assert pd.isna(frame.loc["ISIC_0030105", "site"]) and pd.isna(frame.loc["ISIC_0032966", "sex"])
    assert frame["mask_path"].isna().all() and frame["patient_id"].isna().all()


def test_isic2017_flags_and_metadata_found_by_official_name(fixtures):
    frame = by_id(read_source(Source(fixtures / "ISIC-2017_Training_Part3_GroundTruth.csv")))
    assert frame["diagnosis"].to_dict() == {
        "ISIC_0000000": "nv", "ISIC_0000002": "mel", "ISIC_0000017": "nv", "ISIC_0012090": "bkl",
        "ISIC_0000080": "nv", "ISIC_0012653": "nv"}
    assert (frame.loc["ISIC_0000002", "age"], frame.loc["ISIC_0000002", "sex"]) == ("60", "female")
    assert frame.loc["ISIC_0000080", ["age", "sex"]].isna().all()
    assert frame["site"].isna().all() and frame["image_path"].isna().all()


def test_isic2019_one_hot_downsampled_ids_and_metadata(fixtures, tmp_path):
    frame = by_id(read_source(Source(fixtures / "ISIC_2019_Training_GroundTruth.csv", images_dir=tmp_path)))
    assert frame.loc["ISIC_0029417", "diagnosis"] == "scc"
    assert frame.loc["ISIC_0053454", "diagnosis"] == "mel"
    # The id loses the _downsampled suffix so it matches ISIC 2017; the path keeps the real file name.
    row = frame.loc["ISIC_0012653"]
    assert row.image_path == str(tmp_path.absolute() / "ISIC_0012653_downsampled.jpg")
    assert (row.diagnosis, row.age, row.site, row.lesion_id) == ("nv", "50", "posterior torso", "MSK4_0011169")
    assert pd.isna(frame.loc["ISIC_0025767", "site"])


def test_isic2019_without_metadata_has_no_metadata(fixtures, tmp_path):
    for name in ("ISIC_2019_Training_GroundTruth.csv",):
        (tmp_path / name).write_bytes((fixtures / name).read_bytes())
    frame = read_source(Source(tmp_path / "ISIC_2019_Training_GroundTruth.csv"))
    assert len(frame) == 10 and frame[["age", "sex", "site", "lesion_id"]].isna().all().all()


def test_isic2020_diagnosis_strings_and_patients(fixtures):
    frame = by_id(read_source(Source(fixtures / "ISIC_2020_Training_GroundTruth.csv")))
    assert frame["diagnosis"].to_dict() == {
        "ISIC_0149568": "mel", "ISIC_9022005": "mel", "ISIC_0339773": "unk", "ISIC_2741583": "nv",
        "ISIC_4261232": "nv", "ISIC_0171983": "bkl", "ISIC_0333589": "bkl", "ISIC_3097899": "unk",
        "ISIC_4225838": "unk", "ISIC_0086462": "unk"}
    assert frame.loc["ISIC_0149568", "patient_id"] == "IP_0962375"
    assert frame["lesion_id"].isna().all()


def test_isic2020_duplicate_pairs_come_from_the_companion(fixtures):
    pairs = read_duplicate_pairs(Source(fixtures / "ISIC_2020_Training_GroundTruth.csv"))
    assert pairs[:2] == [("ISIC_0149568", "ISIC_9022005"), ("ISIC_2741583", "ISIC_4261232")]
    assert read_duplicate_pairs(Source(fixtures / "HAM10000_metadata.csv")) == []


def test_labels_csv_paths_are_relative_to_its_folder_and_long_names_accepted(tmp_path):
    (tmp_path / "set").mkdir()
    csv = tmp_path / "set" / "labels.csv"
    csv.write_text("image_id,file,mask_file,diagnosis,age,sex,site,lesion_id\n"
                   "A,images/A.jpg,masks/A.png,Melanoma,45,male,back,L1\n"
                   "B,images/B.jpg,,nv,,unknown,,\n")
    frame = by_id(read_source(Source(csv)))
    assert frame.loc["A", "image_path"] == str(tmp_path.absolute() / "set" / "images" / "A.jpg")
    assert frame.loc["A", "mask_path"] == str(tmp_path.absolute() / "set" / "masks" / "A.png")
    assert frame["diagnosis"].tolist() == ["mel", "nv"]
    assert frame.loc["B", ["mask_path", "age", "sex", "site", "lesion_id", "patient_id"]].isna().all()


def test_labels_csv_with_an_unknown_diagnosis_fails_with_its_name(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("image_id,file,diagnosis\nA,a.jpg,melanom\n")
    with pytest.raises(DataError, match=r"labels.csv: unknown diagnosis 'melanom' \(1 rows\)"):
        read_source(Source(csv))


def test_unrecognised_table_says_how_to_name_the_format(tmp_path):
    csv = tmp_path / "odd.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(DataError) as err:
        read_source(Source(csv))
    assert str(err.value) == (f"{csv}: cannot tell the format from its columns (a, b); name it as "
                              "PATH:FORMAT with FORMAT one of labels, ham10000, isic2019, isic2020, isic2017")


def test_companion_given_as_source_points_to_its_ground_truth(fixtures):
    with pytest.raises(DataError, match="is the isic2019_metadata table of isic2019: pass the ground-truth"):
        parse_source_spec(str(fixtures / "ISIC_2019_Training_Metadata.csv"))


def test_explicit_format_with_missing_columns_is_reported(fixtures):
    with pytest.raises(DataError, match="missing column\\(s\\) dx, lesion_id, localization for format ham10000"):
        read_source(Source(fixtures / "ISIC-2017_Training_Part3_GroundTruth.csv", "ham10000"))


def test_spec_with_explicit_companion_and_format(fixtures, tmp_path):
    gt, meta = tmp_path / "gt.csv", tmp_path / "meta.csv"
    gt.write_bytes((fixtures / "ISIC_2019_Training_GroundTruth.csv").read_bytes())
    meta.write_bytes((fixtures / "ISIC_2019_Training_Metadata.csv").read_bytes())
    [source] = parse_source_spec(f"{gt}+{meta}:isic2019", images_dir=Path("imgs"))
    assert (source.format, source.companion, source.images_dir) == ("isic2019", meta, Path("imgs"))
    assert read_source(source)["lesion_id"].notna().sum() == 7


def test_folder_spec_finds_every_ground_truth_with_its_companion(fixtures):
    sources = sources_in_directory(fixtures)
    assert [(s.path.name, s.format, s.companion.name if s.companion else None) for s in sources] == [
        ("HAM10000_metadata.csv", "ham10000", None),
        ("ISIC-2017_Training_Part3_GroundTruth.csv", "isic2017", "ISIC-2017_Training_Data_metadata.csv"),
        ("ISIC_2019_Training_GroundTruth.csv", "isic2019", "ISIC_2019_Training_Metadata.csv"),
        ("ISIC_2020_Training_GroundTruth.csv", "isic2020", "ISIC_2020_Training_Duplicates.csv"),
    ]


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        parse_source_spec(str(tmp_path / "nope.csv"))
