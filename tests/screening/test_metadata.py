"""The metadata contract: bins, aliases, forgiving parsing, one-hot layout, manifest round trip."""

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from screening.metadata import DEFAULT_VOCABULARY as V
from screening.metadata import MAX_PLAUSIBLE_AGE, MetadataVocabulary

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isic_metadata"

# Every raw site string in HAM10000 `localization`, ISIC 2019 `anatom_site_general` and
# ISIC 2020 `anatom_site_general_challenge`, with the group we resolved it to.
KNOWN_SITES = {
    "scalp": "head_neck", "ear": "head_neck", "face": "head_neck", "neck": "head_neck",
    "head/neck": "head_neck",
    "back": "upper_body", "chest": "upper_body", "trunk": "upper_body", "torso": "upper_body",
    "anterior torso": "upper_body", "posterior torso": "upper_body",
    "abdomen": "lower_body", "lateral torso": "lower_body",
    "upper extremity": "extremities", "lower extremity": "extremities", "hand": "extremities",
    "foot": "extremities",
    "genital": "genital_oral", "oral/genital": "genital_oral",
    "acral": "special", "palms/soles": "special",
}


def test_age_bins_are_ten_years_with_open_last_bin_and_unknown():
    assert V.age_bins == ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", ">=80", "unknown"]


@pytest.mark.parametrize("raw, expected", [
    (0, "0-9"), ("9.9", "0-9"), (10, "10-19"), ("45", "40-49"), (" 45.0 ", "40-49"), (79, "70-79"),
    (80, ">=80"), ("85", ">=80"), (120, ">=80"),
])
def test_age_parsing(raw, expected):
    code, warning = V.age_code(raw)
    assert V.age_bins[code] == expected and warning is None


@pytest.mark.parametrize("raw, warning", [
    ("", "age unknown"), (None, "age unknown"), (float("nan"), "age unknown"), ("unknown", "age unknown"),
    ("abc", "age 'abc' is not a number, used unknown"), ("-3", "age '-3' is out of range, used unknown"),
    ("200", "age '200' is out of range, used unknown"),
])
def test_bad_or_missing_age_is_unknown_with_a_warning(raw, warning):
    assert V.age_code(raw) == (len(V.age_bins) - 1, warning)


@pytest.mark.parametrize("raw, expected", [
    ("M", "male"), ("m", "male"), (" Male ", "male"), ("F", "female"), ("FEMALE", "female"),
    ("", "unknown"), ("unknown", "unknown"), ("x", "unknown"),
])
def test_sex_parsing(raw, expected):
    assert V.sexes[V.sex_code(raw)[0]] == expected


@pytest.mark.parametrize("raw, group", sorted(KNOWN_SITES.items()))
def test_every_known_raw_site_maps_to_one_group(raw, group):
    assert V.site_group(raw) == group
    assert V.site_group(raw.upper().replace(" ", "_")) == group  # case and underscores forgiven


def test_unmapped_site_warns_and_is_unknown():
    codes, warnings = V.codes(50, "male", "elbow pit")
    assert V.sites[codes.site] == "unknown"
    assert warnings == ["site 'elbow pit' not recognised, used unknown"]


def test_one_hot_has_exactly_one_one_per_field():
    vec, warnings = V.encode("62", "female", "back")
    assert warnings == []
    assert vec.dtype == np.float32 and vec.shape == (V.dim,) and vec.sum() == 3
    on = [name for name, v in zip(V.feature_names, vec) if v]
    assert on == ["age=60-69", "sex=female", "site=upper_body"]


def test_all_missing_encodes_the_unknown_codes():
    vec, warnings = V.encode(None, None, None)
    assert V.one_hot(V.unknown_codes()).tolist() == vec.tolist()
    assert warnings == ["age unknown", "sex unknown", "site unknown"]


def test_vocabulary_round_trips_through_the_manifest_dict():
    again = MetadataVocabulary.from_dict(V.to_dict())
    assert again == V and again.dim == V.dim == 20


@pytest.mark.data
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/isic_metadata is absent")
@pytest.mark.parametrize("table, column", [
    ("HAM10000_metadata.csv", "localization"),
    ("ISIC_2019_Training_Metadata.csv", "anatom_site_general"),
    ("ISIC_2020_Training_GroundTruth.csv", "anatom_site_general_challenge"),
])
def test_every_site_in_the_public_tables_is_mapped(table, column):
    with open(SHARED / table, newline="") as fh:
        sites = {row[column] for row in csv.DictReader(fh)}
    unmapped = {s for s in sites if V.site_code(s)[1] not in (None, "site unknown")}
    assert unmapped == set()


_CELL = st.one_of(st.text(max_size=12), st.floats().map(str), st.integers(-500, 500).map(str),
                  st.sampled_from(["45 years", "45,5", "NaN", "-1", "200", "1e999", " F ", "Weiblich", "m.",
                                   "Lower_Extremity", "lower-extremity", "HEAD/NECK", "²", "٤٥"]))


@settings(max_examples=400, deadline=None)
@given(age=_CELL, sex=_CELL, site=_CELL)
def test_any_cells_encode_to_one_code_per_field_and_every_unknown_says_why(age, sex, site):
    """Whatever a clinic typed: never an exception; a known age is the bin of the number it reads
    as (0 to MAX_PLAUSIBLE_AGE); a cell that is not used as given (unknown) always comes with a
    warning, so no patient is screened as 'unknown' silently."""
    codes, warnings = V.codes(age, sex, site)
    n_age, n_sex, n_site = V.field_sizes
    assert 0 <= codes.age < n_age and 0 <= codes.sex < n_sex and 0 <= codes.site < n_site
    unknown = V.unknown_codes()
    assert len(warnings) == sum([codes.age == unknown.age, codes.sex == unknown.sex, codes.site == unknown.site])
    assert all("\n" not in w for w in warnings)
    if codes.age != unknown.age:
        years = float(age)
        assert 0 <= years <= MAX_PLAUSIBLE_AGE
        assert codes.age == sum(years >= edge for edge in V.age_edges)
    assert V.one_hot(codes).sum() == 3
