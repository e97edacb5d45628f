"""The index builder on the real-format fixtures: class mapping, de-duplication, split, CLI."""

import re

import pandas as pd
import pytest

from training.data.prepare import INDEX_COLUMNS, build_index, main, prepare_index
from training.data.errors import DataError


def test_fixture_merge_counts_every_step(fixtures, tmp_path):
    prepared = build_index([fixtures], "ham7", images_dir=tmp_path)
    index, report = prepared.index, prepared.report
    assert list(index.columns) == INDEX_COLUMNS
    assert report.lines()[:11] == [
        "Sources:",
        "  fixtures/HAM10000_metadata.csv (ham10000): 9 rows",
        "  fixtures/ISIC-2017_Training_Part3_GroundTruth.csv (isic2017): 6 rows",
        "  fixtures/ISIC_2019_Training_GroundTruth.csv (isic2019): 10 rows",
        "  fixtures/ISIC_2020_Training_GroundTruth.csv (isic2020): 10 rows, 4 left out "
        "(diagnosis in no class of ham7: unk 4)",
        "Duplicates removed: 10",
        "  ham10000 rows whose image is kept from isic2019: 1",
        "  isic2017 rows whose image is kept from isic2019: 4",
        "  isic2019 rows whose image is kept from ham10000: 3",
        "  ISIC 2020 images listed as duplicates: 2",
        "  dropped copies with another diagnosis than the kept row: 1 (another class: 0)",
    ]
    assert len(index) == 35 - 4 - 10 and index["image_id"].is_unique
    rows = index.set_index("image_id")
    # HAM10000 wins ties (finer site names); ISIC 2019 wins where HAM lacks the sex.
    assert rows.loc["ISIC_0029417", ["source", "diagnosis", "label", "site"]].tolist() == \
        ["ham10000", "akiec", "akiec", "neck"]
    assert rows.loc["ISIC_0032966", ["source", "sex"]].tolist() == ["isic2019", "female"]
    # ISIC 2017 images come from ISIC 2019 (which adds the site), _downsampled ones included.
    assert rows.loc["ISIC_0000017", "image_path"] == str(tmp_path.absolute() / "ISIC_0000017_downsampled.jpg")
    assert rows.loc[["ISIC_0000080", "ISIC_0012090"], "source"].tolist() == ["isic2017", "isic2017"]
    # The second image of each ISIC 2020 duplicate pair is gone, the first stays.
    assert "ISIC_9022005" not in rows.index and "ISIC_4261232" not in rows.index
    assert {"ISIC_0149568", "ISIC_2741583"} <= set(rows.index)
    assert report.class_counts.sum().sum() == 21 and report.groups_on_both_sides == 0


def test_split_keeps_each_lesion_and_patient_on_one_side(fixtures):
    index = prepare_index([fixtures], "ham7", seed=3)
    for column in ("lesion_id", "patient_id"):
        sides = index.dropna(subset=[column]).groupby(column)["split"].nunique()
        assert (sides == 1).all()
    assert set(index["split"]) == {"train", "val"}


def test_paper5_leaves_out_akiec_scc_and_df(fixtures):
    prepared = build_index([fixtures], "paper5")
    assert set(prepared.index["label"]) == {"nv", "bkl", "mel"}
    assert [(s.name.split(" ")[0], dict(s.unclassified)) for s in prepared.report.sources] == [
        ("fixtures/HAM10000_metadata.csv", {"df": 1, "akiec": 1}),
        ("fixtures/ISIC-2017_Training_Part3_GroundTruth.csv", {}),
        ("fixtures/ISIC_2019_Training_GroundTruth.csv", {"scc": 2}),
        ("fixtures/ISIC_2020_Training_GroundTruth.csv", {"unk": 4}),
    ]


def test_drop_missing_metadata_counts_each_field(fixtures):
    prepared = build_index([fixtures], "ham7", drop_missing_metadata=True)
    assert dict(prepared.report.missing_metadata) == {"age": 1, "sex": 1, "site": 3}
    assert "Dropped for missing metadata: 3 rows (age 1, sex 1, site 3)" in prepared.report.lines()
    assert len(prepared.index) == 18
    assert not {"ISIC_0030105", "ISIC_0012090", "ISIC_0000080"} & set(prepared.index["image_id"])


def test_unrecognised_site_strings_are_reported(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("image_id,file,diagnosis,site\nA,a.jpg,nv,elbow\nB,b.jpg,mel,back\n"
                   "C,c.jpg,nv,elbow\nD,d.jpg,mel,\n")
    report = build_index([csv], "ham7").report
    assert dict(report.unknown_sites) == {"elbow": 2}
    assert "Site strings the metadata vocabulary maps to unknown: 'elbow' 2" in report.lines()


def test_nothing_left_is_an_error_that_says_why(fixtures):
    with pytest.raises(DataError) as err:
        build_index([fixtures / "ISIC_2020_Training_GroundTruth.csv"],
                    [{"name": "vasc", "malignant": True}, {"name": "df"}])
    assert str(err.value) == ("no rows left to index: of 10 rows read, 10 have a diagnosis in no class "
                              "of custom, 0 were duplicates and 0 missed metadata")


def test_cli_writes_the_index_and_prints_the_report(fixtures, tmp_path, capsys):
    out = tmp_path / "out" / "index.csv"
    code = main(["--source", str(fixtures / "HAM10000_metadata.csv"),
                 "--source", f"{fixtures / 'ISIC_2019_Training_GroundTruth.csv'}:isic2019",
                 "--images", str(tmp_path), "--val-fraction", "0.5", "--seed", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    index = pd.read_csv(out)
    assert list(index.columns) == INDEX_COLUMNS and len(index) == 9 + 10 - 4
    assert "  isic2019 rows whose image is kept from ham10000: 3" in printed
    assert printed.strip().endswith(f"Wrote 15 rows to {out}")


def test_cli_unknown_classes_exit_2_with_one_line(fixtures, tmp_path, capsys):
    code = main(["--source", str(fixtures), "--classes", "ham8", "--out", str(tmp_path / "i.csv")])
    assert code == 2
    assert capsys.readouterr().err == ("error: unknown class configuration 'ham8'; use one of ham7, paper5 "
                                       "or a path to a .yaml file\n")
    assert not (tmp_path / "i.csv").exists()


def test_cli_bad_fraction_exit_2(fixtures, capsys):
    assert main(["--source", str(fixtures), "--val-fraction", "1.5"]) == 2
    assert capsys.readouterr().err == "error: validation fraction must lie in [0, 1), got 1.5\n"


# -- three-way split and whole sources held out ---------------------------------------------------

def _labels_folder(root, name, rows):
    folder = root / name
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


def _clinic(prefix, n, shared_lesion=None):
    rows = []
    for i in range(n):
        diagnosis = ("mel", "nv", "bcc", "bkl")[i % 4]
        lesion = shared_lesion if (shared_lesion and i == 0) else f"{prefix}_L{i // 2}"
        rows.append({"image_id": f"{prefix}_{i:04d}", "file": f"images/{prefix}_{i:04d}.jpg",
                     "diagnosis": diagnosis, "lesion_id": lesion})
    return rows


def test_labels_sources_are_named_by_their_folder(tmp_path):
    csv = _labels_folder(tmp_path, "clinic_a", _clinic("A", 8))
    index = prepare_index([csv], "ham7", val_fraction=0.25)
    assert set(index["source"]) == {"clinic_a"}


def test_three_way_split_with_a_held_out_source(tmp_path):
    a = _labels_folder(tmp_path, "clinic_a", _clinic("A", 400))
    b = _labels_folder(tmp_path, "clinic_b", _clinic("B", 80, shared_lesion="A_L0"))
    prepared = build_index([a, b], "ham7", val_fraction=0.1, test_fraction=0.2, holdout_sources=["clinic_b"])
    index = prepared.index
    # The held-out source is external whole, and so is the clinic-A lesion it shares.
    assert (index.loc[index["source"] == "clinic_b", "split"] == "external").all()
    assert (index.loc[index["lesion_id"] == "A_L0", "split"] == "external").all()
    inside = index[index["split"] != "external"]
    shares = inside["split"].value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.03 and abs(shares["val"] - 0.1) < 0.03
    for _, part in inside.groupby("label"):
        assert abs((part["split"] == "test").mean() - 0.2) < 0.05
    assert (index.groupby("lesion_id")["split"].nunique() == 1).all()
    assert prepared.report.groups_on_both_sides == 0
    assert "Classes (train / val / test / external):" in prepared.report.lines()


def test_split_is_a_pure_function_of_inputs_and_seed(tmp_path):
    a = _labels_folder(tmp_path, "clinic_a", _clinic("A", 200))
    first = prepare_index([a], "ham7", val_fraction=0.1, test_fraction=0.2, seed=3)
    again = prepare_index([a], "ham7", val_fraction=0.1, test_fraction=0.2, seed=3)
    other = prepare_index([a], "ham7", val_fraction=0.1, test_fraction=0.2, seed=4)
    assert first["split"].tolist() == again["split"].tolist() != other["split"].tolist()


@pytest.mark.parametrize("kwargs, message", [
    ({"holdout_sources": ["clinic_z"]}, "held-out source(s) clinic_z not among the sources read: clinic_a"),
    ({"test_fraction": 0.8, "val_fraction": 0.3}, "test fraction must lie in [0, 1) and leave rows"),
])
def test_bad_split_requests_are_refused(tmp_path, kwargs, message):
    a = _labels_folder(tmp_path, "clinic_a", _clinic("A", 20))
    with pytest.raises(DataError, match=re.escape(message)):
        build_index([a], "ham7", **kwargs)
