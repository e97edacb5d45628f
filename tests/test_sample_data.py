"""The committed sample data: what the generator writes, complete, small, and following its label rule."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from screening.metadata import DEFAULT_VOCABULARY

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
REGENERATE = "the committed sample data are stale: run `make sample-data` and commit the result"


def _load_generator():
    spec = importlib.util.spec_from_file_location("sample_data_generate", SAMPLE_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve the script's annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def labels() -> list[dict[str, str]]:
    return _rows(SAMPLE_DIR / "labels.csv")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample_data")
    _load_generator().generate(out)
    return out


def test_csv_files_match_the_generator_exactly(regenerated):
    for name in ("labels.csv", "patients.csv"):
        assert (regenerated / name).read_bytes() == (SAMPLE_DIR / name).read_bytes(), f"{name}: {REGENERATE}"


def test_masks_match_exactly_and_images_within_jpeg_tolerance(regenerated, labels):
    for row in labels:
        committed_mask = cv2.imread(str(SAMPLE_DIR / row["mask_file"]), cv2.IMREAD_UNCHANGED)
        fresh_mask = cv2.imread(str(regenerated / row["mask_file"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(committed_mask, fresh_mask), f"{row['mask_file']}: {REGENERATE}"
        committed = cv2.imread(str(SAMPLE_DIR / row["file"])).astype(np.int16)
        fresh = cv2.imread(str(regenerated / row["file"])).astype(np.int16)
        # Another libjpeg build may round differently; a changed drawing moves far more than this.
        assert np.abs(committed - fresh).mean() < 1.0, f"{row['file']}: {REGENERATE}"


def test_folder_holds_exactly_the_listed_images(labels):
    patients = _rows(SAMPLE_DIR / "patients.csv")
    on_disk = sorted(p.name for p in (SAMPLE_DIR / "images").iterdir())
    assert sorted(r["image"] for r in patients) == on_disk
    assert sorted(Path(r["file"]).name for r in labels) == on_disk
    assert sorted(p.name for p in (SAMPLE_DIR / "masks").iterdir()) == sorted(Path(r["mask_file"]).name for r in labels)
    assert 64 <= len(on_disk) <= 80
    by_image = {f"{r['image_id']}.jpg": r for r in labels}
    for row in patients:
        source = by_image[row["image"]]
        assert [row[k] for k in ("patient_id", "age", "sex", "site")] == \
               [source[k] for k in ("patient_id", "age", "sex", "site")]


def test_total_size_is_well_under_5_mb():
    total = sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024


def test_images_and_masks_have_the_documented_format(labels):
    for row in labels:
        image = cv2.imread(str(SAMPLE_DIR / row["file"]))
        mask = cv2.imread(str(SAMPLE_DIR / row["mask_file"]), cv2.IMREAD_UNCHANGED)
        assert image.shape == (192, 256, 3)
        assert mask.shape == (192, 256) and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}


def test_classes_are_balanced_and_splits_must_be_grouped(labels):
    counts = {d: sum(r["diagnosis"] == d for r in labels) for d in ("nv", "bkl", "mel", "bcc")}
    assert counts == {"nv": 18, "bkl": 18, "mel": 18, "bcc": 18}
    lesions: dict[str, list[dict[str, str]]] = {}
    for row in labels:
        lesions.setdefault(row["lesion_id"], []).append(row)
    assert sum(len(rows) == 2 for rows in lesions.values()) == 8
    for rows in lesions.values():
        # Two images of one lesion: same patient, diagnosis and metadata.
        assert len({tuple(r[k] for k in ("patient_id", "diagnosis", "age", "sex", "site")) for r in rows}) == 1
    lesions_per_patient: dict[str, set[str]] = {}
    for row in labels:
        lesions_per_patient.setdefault(row["patient_id"], set()).add(row["lesion_id"])
    assert sum(len(ids) > 1 for ids in lesions_per_patient.values()) >= 5
    for column in ("age", "sex", "site"):
        assert 1 <= sum(r[column] == "" for r in labels) <= 8, column


def _solidity(mask: np.ndarray) -> float:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=cv2.contourArea)
    return cv2.contourArea(outline) / cv2.contourArea(cv2.convexHull(outline))


def _violet_minus_red(image_bgr: np.ndarray, mask: np.ndarray) -> float:
    """Mean blue minus mean red inside the lesion: negative for brown, near zero or above for grey-violet."""
    inner = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
    pixels = image_bgr[inner].astype(np.float64)
    return float(pixels[:, 0].mean() - pixels[:, 2].mean())


def test_labels_follow_the_documented_rule(labels):
    """Colour, mask shape and metadata together give the diagnosis of every image."""
    vocab = DEFAULT_VOCABULARY
    for row in labels:
        image = cv2.imread(str(SAMPLE_DIR / row["file"]))
        mask = cv2.imread(str(SAMPLE_DIR / row["mask_file"]), cv2.IMREAD_UNCHANGED)
        dark = _violet_minus_red(image, mask) < -30
        solidity = _solidity(mask)
        assert solidity > 0.95 or solidity < 0.88, (row["image_id"], solidity)
        lobed = solidity < 0.88
        age_bin = vocab.age_bins[vocab.age_code(row["age"])[0]]
        site_group = vocab.site_group(row["site"])
        if dark:
            expected = "mel" if lobed else "nv"
        else:
            assert not lobed, row["image_id"]
            assert (age_bin, site_group) != ("unknown", "unknown"), row["image_id"]
            elderly_head = age_bin in ("70-79", ">=80") or site_group == "head_neck"
            middle_trunk = age_bin in ("40-49", "50-59") or site_group in ("upper_body", "lower_body", "extremities")
            assert elderly_head != middle_trunk, row["image_id"]
            expected = "bcc" if elderly_head else "bkl"
        assert row["diagnosis"] == expected, row["image_id"]
