"""The build record: what it keeps, and how a damaged one is reported."""

import json

import pytest
from engine_helpers import H100, make_manifest, make_record, read_json

from screening.engines.record import RECORD_NAME, BuildRecord, load_record, save_record
from screening.errors import BundleError


def test_record_keeps_what_the_issue_asks_for(tmp_path):
    record = make_record(make_manifest(64), warnings=["Detected layernorm nodes in FP16"])
    data = read_json(save_record(record, tmp_path))
    assert data["models"]["segmenter"]["onnx_sha256"] == "a" * 64
    assert data["models"]["classifier"]["onnx_sha256"] == "b" * 64
    assert data["tensorrt_version"] == "10.13.0.35"
    assert data["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0]}
    assert data["models"]["classifier"]["profile"]["meta"] == {"min": [1, 20], "opt": [4, 20], "max": [8, 20]}
    assert data["built_at"] == "2025-02-03T04:05:06+00:00"
    assert data["build_seconds"] == 123.4
    assert data["warnings"] == ["Detected layernorm nodes in FP16"]
    assert data["precision"] == "fp16"


def test_record_round_trips(tmp_path):
    record = make_record(make_manifest(64), opt=2, max_batch=16)
    save_record(record, tmp_path)
    loaded = load_record(tmp_path)
    assert loaded == record
    assert (loaded.opt_batch, loaded.max_batch) == (2, 16)
    assert loaded.gpu == H100


def test_missing_record_means_an_unfinished_build(tmp_path):
    with pytest.raises(BundleError) as err:
        load_record(tmp_path)
    assert str(err.value) == f"{tmp_path / RECORD_NAME} not found: the engine build in {tmp_path} did not finish"


def test_malformed_record_says_what_to_do(tmp_path):
    data = make_record(make_manifest(64)).to_dict()
    del data["gpu"]
    (tmp_path / RECORD_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"build.json is malformed \(KeyError: 'gpu'\): delete the folder"):
        load_record(tmp_path)


def test_record_of_another_schema_is_refused(tmp_path):
    data = {**make_record(make_manifest(64)).to_dict(), "schema_version": 99}
    with pytest.raises(ValueError, match="schema version 99 is not 1"):
        BuildRecord.from_dict(data)
