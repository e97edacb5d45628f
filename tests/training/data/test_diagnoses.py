"""Canonical diagnosis codes from every source's spelling."""

import math

import pytest

from training.data.diagnoses import canonical_diagnoses, canonical_diagnosis
from training.data.errors import DataError


@pytest.mark.parametrize("raw, code", [
    ("nv", "nv"), ("MEL", "mel"), ("Melanocytic nevi", "nv"), ("nevus", "nv"),
    ("melanoma", "mel"), ("seborrheic keratosis", "bkl"), ("lentigo NOS", "bkl"),
    ("lichenoid keratosis", "bkl"), ("solar lentigo", "bkl"), ("basal cell carcinoma", "bcc"),
    ("Actinic keratoses", "akiec"), ("AK", "akiec"), ("vascular lesions", "vasc"),
    ("dermatofibroma", "df"), ("squamous_cell_carcinoma", "scc"), ("unknown", "unk"),
    ("cafe-au-lait macule", "unk"), ("atypical melanocytic proliferation", "unk"),
    ("  Benign keratosis-like lesions ", "bkl"),
])
def test_known_spellings_map_to_codes(raw, code):
    assert canonical_diagnosis(raw) == code


def test_unknown_spellings_are_none():
    assert canonical_diagnosis("melanom") is None
    assert canonical_diagnosis(math.nan) is None


def test_column_with_bad_values_names_each_and_its_count():
    with pytest.raises(DataError) as err:
        canonical_diagnoses(["mel", "melanom", "melanom", math.nan], "labels.csv")
    assert str(err.value).startswith("labels.csv: unknown diagnosis '(empty)' (1 rows), 'melanom' (2 rows); "
                                     "use one of nv, mel, bkl, bcc, akiec, vasc, df, scc, unk")


def test_column_maps_in_order():
    assert canonical_diagnoses(["nevus", "MEL", "bcc"], "x") == ["nv", "mel", "bcc"]
