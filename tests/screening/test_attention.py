"""The optional attention output: declared in the manifest, validated, passed through by the backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bundle_factory import build_bundle
from screening.attention import ATTENTION_OUTPUT, normalised_maps, problems
from screening.backends.onnxrt import OnnxRuntimeBackend
from screening.engines.buffers import buffer_plan
from screening.errors import BundleError
from screening.manifest import load_manifest

LOGITS = {"logits": ["N", 4]}


def test_bundle_without_attention_is_valid_and_gives_no_maps(tiny_bundle: Path):
    manifest = load_manifest(tiny_bundle)
    assert not manifest.has_attention and manifest.attention_queries == []
    with OnnxRuntimeBackend(tiny_bundle, manifest) as backend:
        outputs = backend.run_batch(*_batch(2))
    assert outputs.attention is None


def test_bundle_with_attention_gives_one_distribution_per_query(tmp_path: Path):
    build_bundle(tmp_path / "b", attention=True)
    manifest = load_manifest(tmp_path / "b")
    assert manifest.has_attention and manifest.attention_queries == ["meta", "mask"]
    with OnnxRuntimeBackend(tmp_path / "b", manifest) as backend:
        outputs = backend.run_batch(*_batch(3))
    assert outputs.attention.shape == (3, 2, 4, 4)
    np.testing.assert_allclose(outputs.attention.sum(axis=(2, 3)), 1.0, atol=1e-5)


def test_manifest_without_the_field_reads_as_no_attention(tiny_bundle: Path, tmp_path: Path):
    """A bundle written before the field existed (like starter@1.1.0) still loads."""
    data = json.loads((tiny_bundle / "manifest.json").read_text())
    data.pop("attention_queries", None)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    manifest = load_manifest(tmp_path, verify_files=False)
    assert manifest.attention_queries == [] and not manifest.has_attention


@pytest.mark.parametrize("queries, outputs, message", [
    (["meta"], LOGITS, "no 'attention' output"),
    ([], {**LOGITS, ATTENTION_OUTPUT: ["N", 2, 4, 4]}, "needs attention_queries"),
    ("meta", LOGITS, "must be a list"),
    (["meta", ""], {**LOGITS, ATTENTION_OUTPUT: ["N", 2, 4, 4]}, "must be a list"),
    (["meta", "meta"], {**LOGITS, ATTENTION_OUTPUT: ["N", 2, 4, 4]}, "twice"),
    (["meta", "mask"], {**LOGITS, ATTENTION_OUTPUT: ["N", 3, 4, 4]}, "has 3 queries"),
    (["meta", "mask"], {**LOGITS, ATTENTION_OUTPUT: ["N", 2, 16]}, "must have shape"),
    (["meta", "mask"], {**LOGITS, ATTENTION_OUTPUT: ["N", 2, 0, 4]}, "must have shape"),
    (["meta", "mask"], {**LOGITS, ATTENTION_OUTPUT: ["N", 2, True, 4]}, "must have shape"),
])
def test_inconsistent_attention_declarations_are_named(queries, outputs, message):
    assert message in problems(queries, outputs)[0]


def test_a_bad_declaration_makes_the_bundle_unusable(tmp_path: Path):
    build_bundle(tmp_path / "b", attention=True)
    path = tmp_path / "b" / "manifest.json"
    data = json.loads(path.read_text())
    data["attention_queries"] = ["meta"]
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="has 2 queries but attention_queries names 1"):
        load_manifest(tmp_path / "b")


def test_declared_attention_gets_a_tensorrt_buffer(tmp_path: Path):
    with_maps = buffer_plan(build_bundle(tmp_path / "a", attention=True), max_batch=4)
    without = buffer_plan(build_bundle(tmp_path / "b"), max_batch=4)
    assert with_maps.host_outputs[ATTENTION_OUTPUT] == "classifier/attention"
    assert with_maps.device["classifier/attention"].shape == (4, 2, 4, 4)
    assert ATTENTION_OUTPUT not in without.host_outputs


def test_display_maps_scale_each_map_to_its_peak():
    maps = normalised_maps(np.array([[[0.1, 0.3], [0.2, 0.4]], [[0.25, 0.25], [0.25, 0.25]]]))
    np.testing.assert_allclose(maps[0], [[0.25, 0.75], [0.5, 1.0]])
    np.testing.assert_allclose(maps[1], 1.0)


def _batch(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.standard_normal((n, 3, 32, 32), dtype=np.float32)
    meta = np.zeros((n, 20), np.float32)
    meta[:, 0] = 1
    return image, image, meta
