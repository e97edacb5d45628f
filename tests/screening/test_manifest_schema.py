"""Manifest validation is total: every field type- and range-checked, one line naming it (exit 3).

Also the bundle's identity: a hash of the canonical manifest, so an edited manifest is another
bundle even with the same name, version and ONNX files.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundle_factory import build_bundle
from screening.cli import cli
from screening.errors import BundleError
from screening.manifest import load_manifest
from screening.manifest_schema import FIELDS, MAX_MANIFEST_BYTES, FieldRule, validate_manifest_data

REPO = Path(__file__).resolve().parents[2]
STARTER = REPO / "engines" / "starter"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("engines") / "tiny"
    build_bundle(folder)
    return folder


@pytest.fixture(scope="module")
def good(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def copy_bundle(bundle: Path, target: Path, data: dict | str | bytes) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("segmenter.onnx", "classifier.onnx"):
        os.link(bundle / name, target / name)
    text = data if isinstance(data, (str, bytes)) else json.dumps(data)
    (target / "manifest.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return target


def with_change(data: dict, path: str, value) -> dict:
    """A deep copy of ``data`` with the field at ``a.b[2].c`` set (or removed when value is ...)."""
    data = copy.deepcopy(data)
    parts = [part for part in path.replace("[", ".[").split(".") if part]
    node = data
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    key = int(last[1:-1]) if last.startswith("[") else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return data


@pytest.mark.skipif(not (STARTER / "manifest.json").is_file(), reason="engines/starter is absent")
def test_the_committed_starter_manifest_is_valid():
    validate_manifest_data(json.loads((STARTER / "manifest.json").read_text()))
    assert load_manifest(STARTER, verify_files=False).identity.startswith("starter@")


@pytest.mark.parametrize("path, value, message", [
    ("temperature", float("nan"), "manifest field temperature: must be a finite number, got nan"),
    ("temperature", float("inf"), "manifest field temperature: must be a finite number, got inf"),
    ("temperature", -1.0, "manifest field temperature: must lie in (0, 1000], got -1"),
    ("temperature", "0.8", "manifest field temperature: must be a number, got a text '0.8'"),
    ("temperature", True, "manifest field temperature: must be a number, got a boolean true"),
    ("temperature", ..., "manifest field temperature: is missing"),
    ("mask_threshold", 1.0, "manifest field mask_threshold: must lie in (0, 1), got 1"),
    ("classes.[1].malignant", "false", "manifest field classes[1].malignant: must be true or false, got a text 'false'"),
    ("classes.[0].malignant", 1, "manifest field classes[0].malignant: must be true or false, got an integer 1"),
    ("classes.[1].name", "nv", "manifest field classes[].name[1]: 'nv' appears twice"),
    ("classes.[1].name", "p,x", "manifest field classes[1].name: 'p,x' is not allowed here"),
    # A labels file names a class by its code or label in any case: 'melanocytic nevus' went to the last
    # class that read so, silently (screen evaluate, calibrate).
    ("classes.[2].label", "Melanocytic_Nevus", "manifest field classes[2].label: 'Melanocytic_Nevus' reads as "
                                               "class 'nv' in a labels file (case, spaces and _ aside)"),
    ("classes.[1].name", "NV", "manifest field classes[1].name: 'NV' reads as class 'nv' in a labels file"),
    ("classes.[3].label", "MEL", "manifest field classes[3].label: 'MEL' reads as class 'mel' in a labels file"),
    ("classes", [], "manifest field classes: must have 1 to 1000 entries, got 0"),
    ("input_size", [32, "32"], "manifest field input_size[1]: must be an integer, got a text '32'"),
    ("input_size", [32.0, 32], "manifest field input_size[0]: must be an integer, got a number 32.0"),
    ("input_size", [32, 10**9], "manifest field input_size[1]: must lie between 1 and 8192, got 1000000000"),
    ("input_size", 32, "manifest field input_size: must be a list, got an integer 32"),
    ("segmenter.std.[1]", -0.25, "manifest field segmenter.std[1]: must lie in (0, 1000], got -0.25"),
    ("segmenter.std.[1]", 0, "manifest field segmenter.std[1]: must lie in (0, 1000], got 0"),
    ("classifier.mean.[2]", float("nan"), "manifest field classifier.mean[2]: must be a finite number, got nan"),
    ("classifier.std", [0.2, 0.2], "manifest field classifier.std: must have 3 to 3 entries, got 2"),
    ("segmenter.inputs.image", ["N", 3, "32", 32], "manifest field segmenter.inputs.image[2]: must be a positive integer, got '32'"),
    ("segmenter.inputs.image", ["N", 3, 32.5, 32], "manifest field segmenter.inputs.image[2]: must be an integer"),
    ("segmenter.inputs.image", "N,3,32,32", "manifest field segmenter.inputs.image: must be a list"),
    ("segmenter.inputs.image", ["N", 3, 64, 64], "manifest field segmenter.inputs.image: must be [N, 3, 32, 32] (input_size)"),
    ("classifier.outputs.logits", ["N", 5], "manifest field classifier.outputs.logits: must be [N, 4] (one per class)"),
    ("classifier.inputs.meta", ["N", 19], "manifest field classifier.inputs.meta: must be [N, 20]"),
    ("segmenter.file", "../segmenter.onnx", "manifest field segmenter.file: '../segmenter.onnx' must be a file name inside the bundle folder"),
    ("segmenter.file", "/etc/passwd", "manifest field segmenter.file: '/etc/passwd' must be a file name inside the bundle folder"),
    ("classifier.sha256", "ABC", "manifest field classifier.sha256: must be 64 lower-case hex digits"),
    ("metadata.age_edges", [10, 10, 20], "manifest field metadata.age_edges[1]: must be larger than the edge before (10)"),
    ("metadata.site_aliases.back", "nowhere", "manifest field metadata.site_aliases['back']: 'nowhere' is not one of site_groups"),
    # Patients CSV values are read lower-case, '_' as a space: 'Female' would leave every sex unknown.
    ("metadata.sex_values", ["Female", "male"], "manifest field metadata.sex_values[0]: 'Female' can never match a "
                                                "patients CSV value (read lower-case, '_' as a space): write 'female'"),
    ("metadata.site_aliases.Upper_Back", "upper_body", "manifest field metadata.site_aliases['Upper_Back']: can never "
                                                       "match a patients CSV value (read lower-case, '_' as a space): "
                                                       "write 'upper back'"),
    ("mask_input_mode", "both", "manifest field mask_input_mode: must be one of binary, masked_image, got 'both'"),
    ("name", "ti ny\n", "manifest field name: must not contain control characters"),
    ("schema_version", True, "schema version true is not supported"),
    ("segmenter.surprise", 1, "manifest field segmenter.surprise: is not a known field here"),
])
def test_each_bad_field_is_one_line_naming_it(bundle, good, tmp_path, path, value, message):
    folder = copy_bundle(bundle, tmp_path / "bad", with_change(good, path, value))
    with pytest.raises(BundleError) as caught:
        load_manifest(folder)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 3


def test_screen_folder_exits_3_with_one_line(bundle, good, tmp_path):
    folder = copy_bundle(bundle, tmp_path / "bad", with_change(good, "temperature", float("nan")))
    (tmp_path / "images").mkdir()
    (tmp_path / "p.csv").write_text("image\n")
    result = CliRunner().invoke(cli, ["folder", str(tmp_path / "images"), "--meta", str(tmp_path / "p.csv"),
                                      "--out", str(tmp_path / "r.csv"), "--bundle", str(folder), "--quiet"])
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == [
        "Error: manifest field temperature: must be a finite number, got nan"]


def test_a_model_file_linked_out_of_the_bundle_is_refused(bundle, good, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes((bundle / "segmenter.onnx").read_bytes())
    folder = copy_bundle(bundle, tmp_path / "b", with_change(good, "segmenter.file", "seg.onnx"))
    (folder / "seg.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match=r"manifest field segmenter.file: 'seg.onnx' leads outside the bundle"):
        load_manifest(folder)


def test_huge_deep_and_duplicate_key_manifests_are_refused(bundle, good, tmp_path):
    huge = json.dumps({**good, "padding": "x" * MAX_MANIFEST_BYTES})
    with pytest.raises(BundleError, match=r"larger than 4 MiB: not a manifest"):
        load_manifest(copy_bundle(bundle, tmp_path / "huge", huge))
    deep = json.dumps({**good, "training": {}}).replace('"training": {}', '"training": ' + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match=r"nested deeper than 32 levels"):
        load_manifest(copy_bundle(bundle, tmp_path / "deep", deep))
    twice = json.dumps(good)[:-1] + ', "temperature": 5.0}'
    with pytest.raises(BundleError, match=r"key 'temperature' appears twice in one object"):
        load_manifest(copy_bundle(bundle, tmp_path / "twice", twice))
    with pytest.raises(BundleError, match=r"not UTF-8 text"):
        load_manifest(copy_bundle(bundle, tmp_path / "latin", json.dumps(good).encode() + b"\xff"))


def test_unknown_top_level_fields_are_tolerated_but_change_the_identity(bundle, good, tmp_path):
    plain = load_manifest(copy_bundle(bundle, tmp_path / "a", good))
    newer = load_manifest(copy_bundle(bundle, tmp_path / "b", {**good, "future_field": {"x": 1}}))
    assert plain.identity.startswith("tiny@1.0+") and len(plain.identity) == len("tiny@1.0+") + 8
    assert newer.identity != plain.identity and newer.extra == {"future_field": {"x": 1}}


def test_identity_ignores_layout_but_not_content(bundle, good, tmp_path):
    base = load_manifest(copy_bundle(bundle, tmp_path / "a", good)).digest
    reordered = json.dumps(dict(reversed(list(good.items()))), indent=7)
    assert load_manifest(copy_bundle(bundle, tmp_path / "b", reordered)).digest == base
    edited = with_change(good, "classes.[0].label", "naevus")
    assert load_manifest(copy_bundle(bundle, tmp_path / "c", edited)).digest != base


def test_a_new_field_needs_only_a_table_entry(good, monkeypatch):
    def check_colour(value, path):
        from screening.manifest_schema import expect_text
        expect_text(value, path, max_len=10)

    monkeypatch.setitem(FIELDS, "colour", FieldRule(check_colour))
    validate_manifest_data({**good, "colour": "red"})
    with pytest.raises(BundleError, match=r"manifest field colour: must be a text, got an integer 3"):
        validate_manifest_data({**good, "colour": 3})


# -- fuzz: any hostile value anywhere is a BundleError or a valid manifest, never a crash ----------

HOSTILE = st.one_of(st.sampled_from([None, True, False, 0, -1, 1, 2**63, -2**63, 1e308, -0.0, float("nan"),
                                     float("inf"), float("-inf"), "", "true", "N", "1", " ", "\x00", "../x",
                                     [], {}, [[]], ["N"], {"": None}]),
                    st.text(max_size=5), st.integers(), st.floats(allow_nan=True, allow_infinity=True))


def _leaf_paths(data, prefix=""):
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "training":
                continue  # free-form provenance
            yield from _leaf_paths(value, f"{prefix}{'.' if prefix else ''}{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _leaf_paths(value, f"{prefix}.[{i}]")
    if prefix:
        yield prefix


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_manifests_fail_cleanly(good, data):
    paths = sorted(set(_leaf_paths(good)))
    path = data.draw(st.sampled_from(paths))
    value = data.draw(st.one_of(HOSTILE, st.just(...)))
    from screening.manifest import Manifest
    try:
        manifest = Manifest.from_dict(with_change(good, path, value))
    except BundleError as error:
        assert "\n" not in str(error)
        return
    # Accepted: then every number the runtime uses is finite and in range.
    assert math.isfinite(manifest.temperature) and manifest.temperature > 0
    assert all(isinstance(c.malignant, bool) for c in manifest.classes)
    assert all(s > 0 and math.isfinite(s) for s in (*manifest.segmenter.std, *manifest.classifier.std))
    assert all(isinstance(side, int) and side > 0 for side in manifest.input_size)
