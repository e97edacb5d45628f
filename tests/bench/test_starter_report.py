"""Tests for bench/starter_report.py's split folders: what a clinic's folder and patients CSV hold."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import starter_report


@pytest.fixture
def rows(tmp_path: Path) -> pd.DataFrame:
    sources = tmp_path / "sources"
    sources.mkdir()
    for name in ("a.JPG", "b.png"):
        (sources / name).write_bytes(b"pixels of " + name.encode())
    return pd.DataFrame({"image_id": ["ISIC_1", "ISIC_2"], "image_path": [str(sources / "a.JPG"), str(sources / "b.png")],
                         "group": ["lesion:L1", "lesion:L2"], "age": ["45", ""], "sex": ["male", "female"],
                         "site": ["back", "face"]})


def test_the_folder_has_every_image_and_its_metadata(rows: pd.DataFrame, tmp_path: Path) -> None:
    starter_report.build_folder(rows, tmp_path / "test")
    assert sorted(p.name for p in (tmp_path / "test" / "images").iterdir()) == ["ISIC_1.jpg", "ISIC_2.png"]
    assert (tmp_path / "test" / "images" / "ISIC_1.jpg").read_bytes() == b"pixels of a.JPG"
    patients = pd.read_csv(tmp_path / "test" / "patients.csv", dtype=str, keep_default_na=False)
    assert patients.to_dict("records") == [
        {"image": "ISIC_1.jpg", "patient_id": "lesion:L1", "age": "45", "sex": "male", "site": "back"},
        {"image": "ISIC_2.png", "patient_id": "lesion:L2", "age": "", "sex": "female", "site": "face"}]


def test_without_metadata_age_sex_and_site_are_blank(rows: pd.DataFrame, tmp_path: Path) -> None:
    starter_report.build_folder(rows, tmp_path / "external-no-metadata", metadata=False)
    patients = pd.read_csv(tmp_path / "external-no-metadata" / "patients.csv", dtype=str, keep_default_na=False)
    assert list(patients.columns) == ["image", "patient_id", "age", "sex", "site"]
    assert (patients[["age", "sex", "site"]] == "").all().all()
    assert list(patients["patient_id"]) == ["lesion:L1", "lesion:L2"]  # still grouped by lesion
