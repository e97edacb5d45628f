"""The bundle manifest: round trip, consistency checks and file verification with exact messages."""

import json
from dataclasses import replace

import pytest

from screening.errors import BundleError
from screening.manifest import ClassSpec, Manifest, ModelSpec, load_manifest, save_manifest, sha256_file
from screening.metadata import DEFAULT_VOCABULARY


def make_manifest(bundle, **changes) -> Manifest:
    (bundle / "segmenter.onnx").write_bytes(b"segmenter bytes")
    (bundle / "classifier.onnx").write_bytes(b"classifier bytes")
    manifest = Manifest(
        name="tiny", version="1.2.3", created="2026-11-25T00:00:00+00:00",
        classes=[ClassSpec("nv", "nevus", False), ClassSpec("mel", "melanoma", True)],
        input_size=(32, 32),
        segmenter=ModelSpec("segmenter.onnx", sha256_file(bundle / "segmenter.onnx"),
                            {"image": ["N", 3, 32, 32]}, {"mask": ["N", 1, 32, 32]}, [0.5] * 3, [0.5] * 3),
        classifier=ModelSpec("classifier.onnx", sha256_file(bundle / "classifier.onnx"),
                             {"image": ["N", 3, 32, 32], "mask": ["N", 1, 32, 32], "meta": ["N", 20]},
                             {"logits": ["N", 2]}, [0.5] * 3, [0.5] * 3),
        metadata=DEFAULT_VOCABULARY,
    )
    return replace(manifest, **changes)


def test_round_trip_through_disk(tmp_path):
    manifest = make_manifest(tmp_path)
    save_manifest(manifest, tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded == manifest
    assert loaded.tag == "tiny@1.2.3" and loaded.malignant_indices == [1]
    assert "not for diagnosis" in json.loads((tmp_path / "manifest.json").read_text())["statement"].lower()


def test_a_bundle_keeps_its_identity_when_a_newer_runtime_fills_in_fields_it_does_not_have(tmp_path):
    """The identity is of what the file says: a tool upgrade that adds an optional field (with a
    default) must not turn every clinic's bundle into "another bundle" (a full rescreen, refused
    evaluations of last month's results)."""
    import hashlib

    save_manifest(make_manifest(tmp_path), tmp_path)
    written = json.loads((tmp_path / "manifest.json").read_text())
    older = {key: value for key, value in written.items() if key not in ("tta", "preprocessing", "card", "derived")}
    (tmp_path / "manifest.json").write_text(json.dumps(older))
    loaded = load_manifest(tmp_path)
    assert loaded.tta == "none" and loaded.preprocessing == []  # the defaults, as before
    as_written = json.dumps(older, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert loaded.digest == hashlib.sha256(as_written.encode()).hexdigest()
    # A change made at run time is part of it (--tta: the journal must not mix), and undoing it undoes it.
    flipped = replace(loaded, tta="flip")
    assert flipped.identity != loaded.identity and replace(flipped, tta="none").identity == loaded.identity
    # Fields this version does not know are part of it, and a saved copy keeps them.
    (tmp_path / "manifest.json").write_text(json.dumps({**older, "resize_mode": "letterbox"}))
    newer = load_manifest(tmp_path)
    assert newer.identity != loaded.identity
    (tmp_path / "copy").mkdir()
    save_manifest(newer, tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / "manifest.json").read_text())["resize_mode"] == "letterbox"


def test_an_edited_manifest_reads_back_with_the_identity_it_had_in_memory(tmp_path):
    """What save_manifest writes is what the digest was of: the file's content with the changes."""
    save_manifest(make_manifest(tmp_path), tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({k: v for k, v in data.items() if k != "tta"}))
    edited = replace(load_manifest(tmp_path), temperature=1.5)
    (tmp_path / "copy").mkdir()
    save_manifest(edited, tmp_path / "copy")
    assert load_manifest(tmp_path / "copy", verify_files=False).identity == edited.identity


def test_results_naming_the_bundle_as_earlier_versions_did_are_still_its_own(tmp_path):
    from screening.validation.scores import names_of

    save_manifest(make_manifest(tmp_path), tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({k: v for k, v in data.items() if k not in ("tta", "requires")}))
    loaded = load_manifest(tmp_path)
    # Before 2026-11-30 the digest rendered every field (defaults filled in, no `requires` yet).
    from screening.manifest import canonical_digest
    rendered = {k: v for k, v in loaded.to_dict().items() if k != "requires"}
    earlier = f"{loaded.tag}+{canonical_digest(rendered)[:8]}"
    assert earlier != loaded.identity and earlier in names_of(loaded)


def test_a_bundle_that_requires_a_field_this_version_does_not_know_is_refused_not_screened_without_it(tmp_path):
    from screening.manifest import fields_required

    manifest = make_manifest(tmp_path, tta="flip")
    assert fields_required(manifest) == ["tta"]  # what export writes into `requires`
    save_manifest(replace(manifest, requires=["tta"]), tmp_path)
    assert load_manifest(tmp_path).requires == ["tta"]  # known: loads
    data = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "resize_mode": "letterbox",
                                                        "requires": ["tta", "resize_mode"]}))
    with pytest.raises(BundleError, match="requires: names resize_mode, which this version of screen does "
                                          "not know: the bundle needs a newer screen"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "resize_mode": "letterbox"}))
    assert load_manifest(tmp_path).extra == {"resize_mode": "letterbox"}  # not required: tolerated


def test_modified_model_file_is_refused(tmp_path):
    save_manifest(make_manifest(tmp_path), tmp_path)
    (tmp_path / "classifier.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match=r"classifier.onnx does not match its manifest sha256"):
        load_manifest(tmp_path)


def test_missing_model_file_is_refused(tmp_path):
    save_manifest(make_manifest(tmp_path), tmp_path)
    (tmp_path / "segmenter.onnx").unlink()
    with pytest.raises(BundleError, match=r"segmenter.onnx listed in the manifest is missing"):
        load_manifest(tmp_path)


def test_an_unreadable_model_file_is_a_bundle_error_not_an_output_error(tmp_path, monkeypatch):
    """A bundle copied with the wrong owner: exit 3 naming the file, not "cannot write the results"."""
    import screening.manifest as manifest_module

    save_manifest(make_manifest(tmp_path), tmp_path)

    def denied(path, *beat):  # sha256_file(path, beat): the hash reports its progress
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(manifest_module, "sha256_file", denied)
    with pytest.raises(BundleError, match=r"^cannot read .*segmenter.onnx: Permission denied$"):
        load_manifest(tmp_path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match=r"manifest.json not found: not a model bundle"):
        load_manifest(tmp_path)
    with pytest.raises(BundleError, match=r"does not exist"):
        load_manifest(tmp_path / "nope")


def test_future_schema_version_is_refused(tmp_path):
    save_manifest(make_manifest(tmp_path), tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["schema_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"schema version 99 is not supported"):
        load_manifest(tmp_path)


def test_malformed_manifest_names_the_problem(tmp_path):
    save_manifest(make_manifest(tmp_path), tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    del data["classes"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"^manifest field classes: is missing$"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("changes, message", [
    ({"classes": [ClassSpec("nv", "nevus", False), ClassSpec("bkl", "keratosis", False)]}, "marks no class as malignant"),
    ({"mask_input_mode": "both"}, "mask_input_mode 'both' is not one of"),
    ({"mask_threshold": 1.0}, "mask_threshold 1.0 must lie strictly between 0 and 1"),
    ({"temperature": 0.0}, "temperature 0.0 must be positive"),
    ({"classes": [ClassSpec("mel", "melanoma", True)]}, "classifier gives 2 logits for 1 classes"),
])
def test_inconsistent_manifests_are_refused(tmp_path, changes, message):
    with pytest.raises(BundleError, match=message):
        make_manifest(tmp_path, **changes).check()


def test_operating_points_round_trip_and_default_is_the_most_sensitive(tmp_path):
    import numpy as np

    from screening.operating_points import fit_operating_points
    points = fit_operating_points(np.linspace(0, 1, 100), np.arange(100) % 2 == 0, fitted_on="validation split")
    save_manifest(make_manifest(tmp_path, operating_points=points), tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded.operating_points == points
    assert loaded.operating_point()["name"] == "sens95"
    assert loaded.operating_point("sens90")["target_sensitivity"] == 0.9


def test_bundle_without_operating_points_still_loads_and_has_none(tmp_path):
    save_manifest(make_manifest(tmp_path), tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    del data["operating_points"], data["default_operating_point"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    loaded = load_manifest(tmp_path)
    assert loaded.operating_points == [] and loaded.operating_point() is None


def test_bad_operating_points_are_refused(tmp_path):
    save_manifest(make_manifest(tmp_path), tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["operating_points"] = [{"name": "sens95"}]
    data["default_operating_point"] = "sens90"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"operating_points\[0\] lacks target_sensitivity.*"
                                          r"default_operating_point 'sens90' is not one of the operating points"):
        load_manifest(tmp_path)
