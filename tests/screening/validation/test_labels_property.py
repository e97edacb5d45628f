"""The labels CSV reader's contract, for any diagnosis cells: each labelled image ends as exactly one
of a class, an unmapped diagnosis or an empty one; an image given two diagnoses is refused in one
line naming the file; nothing else escapes."""

from __future__ import annotations

import csv

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screening.errors import InputError
from screening.manifest import load_manifest
from screening.validation.labels import class_lookup, normal_diagnosis, read_labels

IMAGES = [f"site{i % 2}/img_{i}.jpg" for i in range(5)]
DIAGNOSES = st.one_of(
    st.sampled_from(["mel", "Melanoma", " MELANOMA ", "melanoma\u00a0", "nevus", "Naevus", "nv", "bkl",
                     "Seborrheic_Keratosis", "bcc", "Basal  cell carcinoma", "benign", "", "  ", "0", "mél"]),
    st.text(max_size=8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(0, 4), DIAGNOSES), max_size=8))
def test_any_labels_give_each_image_one_outcome_or_one_line_refusal(tmp_path, tiny_bundle, rows):
    manifest = load_manifest(tiny_bundle, verify_files=False)
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "diagnosis"])
        writer.writerows([f"img_{key}", text] for key, text in rows)
    lookup = class_lookup(manifest)
    said: dict[str, list[str]] = {}
    for key, text in rows:
        said.setdefault(f"site{key % 2}/img_{key}.jpg", []).append(normal_diagnosis(text))
    conflicting = any(len({lookup.get(t, t) for t in texts}) > 1 for texts in said.values())
    try:
        labels = read_labels(path, IMAGES, manifest)
    except InputError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        assert conflicting or "\x00" in "".join(t for _, t in rows)  # a NUL: binary data, not a CSV
        return
    assert not conflicting
    for image in IMAGES:
        outcomes = [image in labels.truth, image in labels.no_label, image in labels.no_row]
        if image not in said:
            assert outcomes == [False, False, True]
            continue
        first = said[image][0]
        if not first:
            assert outcomes == [False, True, False]
        elif first in lookup:
            assert outcomes == [True, False, False] and labels.truth[image] == lookup[first]
        else:
            assert outcomes == [False, False, False] and first in labels.unmapped
    assert sum(labels.unmapped.values()) == sum(1 for texts in said.values() if texts[0] and texts[0] not in lookup)
