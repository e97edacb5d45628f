"""Real TensorRT builds and runs on a GPU: skipped, with the reason, where TensorRT, pycuda or a GPU is missing."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from engine_helpers import SIZE, read_json, write_images

from screening.backends.onnxrt import OnnxRuntimeBackend
from screening.backends.tensorrt import TensorRTBackend, probe_tensorrt
from screening.cli import cli
from screening.engines.environment import detect_environment
from screening.engines.naming import engine_key, timing_cache_path
from screening.manifest import save_manifest
from screening.preprocess import softmax

ENV = detect_environment()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(ENV.problem), reason=ENV.problem or "GPU ready")]


@pytest.fixture(scope="module")
def built(torch_bundle, tmp_path_factory):
    """The torch bundle copied and built for this GPU (batch 1..4, tuned for 2)."""
    from screening.engines.build import build_engines

    source, manifest = torch_bundle
    bundle = tmp_path_factory.mktemp("gpu") / "tiny"
    shutil.copytree(source, bundle)
    cache = tmp_path_factory.mktemp("cache")
    lines = []
    folder, record = build_engines(bundle, manifest, ENV, opt_batch=2, max_batch=4, workspace_gb=1.0,
                                   echo=lines.append, cache_dir=cache)
    return bundle, manifest, folder, record, cache, lines


def test_build_writes_plans_record_and_timing_cache(built):
    bundle, manifest, folder, record, cache, lines = built
    assert folder.name == engine_key(ENV.gpu, ENV.tensorrt_version)
    assert {p.name for p in folder.iterdir()} >= {"segmenter.plan", "classifier.plan", "build.json",
                                                  "segmenter.fp16.onnx", "classifier.fp16.onnx"}
    data = read_json(folder / "build.json")
    assert data["models"]["classifier"]["onnx_sha256"] == manifest.classifier.sha256
    assert data["gpu"]["name"] == ENV.gpu.name
    assert data["models"]["segmenter"]["profile"]["image"] == {
        "min": [1, 3, SIZE, SIZE], "opt": [2, 3, SIZE, SIZE], "max": [4, 3, SIZE, SIZE]}
    assert timing_cache_path(ENV.gpu, ENV.tensorrt_version, cache).stat().st_size > 0
    assert any("building the engine" in line for line in lines)
    assert probe_tensorrt(bundle, manifest).usable


def test_engines_agree_with_onnxruntime_and_split_large_batches(built):
    bundle, manifest, *_ = built
    rng = np.random.default_rng(0)
    n = 7  # above the max batch of 4: split into 4 + 3
    seg = rng.normal(0, 1, (n, 3, SIZE, SIZE)).astype(np.float32)
    cls = rng.normal(0, 1, (n, 3, SIZE, SIZE)).astype(np.float32)
    meta = np.zeros((n, manifest.metadata.dim), np.float32)
    meta[np.arange(n), rng.integers(0, 10, n)] = 1
    with TensorRTBackend(bundle, manifest, batch_size=n) as trt, OnnxRuntimeBackend(bundle, manifest) as ort:
        fp16, fp32 = trt.run_batch(seg, cls, meta), ort.run_batch(seg, cls, meta)
        again = trt.run_batch(seg[:2], cls[:2], meta[:2])
    assert fp16.mask.shape == (n, 1, SIZE, SIZE) and fp16.logits.shape == (n, 7)
    assert np.abs(fp16.mask - fp32.mask).max() < 0.01
    assert np.abs(softmax(fp16.logits) - softmax(fp32.logits)).max() < 0.02
    assert np.allclose(again.logits, fp16.logits[:2], atol=1e-3)


def test_verify_passes_on_sample_images(built, tmp_path):
    bundle, *_ = built
    write_images(tmp_path / "images", 6)
    args = ["engines", "verify", "--bundle", str(bundle), "--images", str(tmp_path / "images")]
    result = CliRunner().invoke(cli, args, prog_name="screen")
    assert result.exit_code == 0, result.output
    assert "on 6 images" in result.output and result.output.endswith("FP16 engines pass verification.\n")


def test_changed_onnx_makes_the_engine_stale(built, tmp_path):
    bundle, manifest, *_ = built
    copy = tmp_path / "tiny"
    shutil.copytree(bundle, copy)
    with open(copy / "classifier.onnx", "ab") as fh:
        fh.write(b"\0")  # a different file: the manifest is re-signed, the engine is not rebuilt
    from screening.manifest import sha256_file
    import dataclasses

    changed = dataclasses.replace(manifest, classifier=dataclasses.replace(
        manifest.classifier, sha256=sha256_file(copy / "classifier.onnx")))
    save_manifest(changed, copy)
    probe = probe_tensorrt(copy, changed)
    assert not probe.usable
    assert "classifier.onnx changed since the build" in probe.reason
    assert probe.reason.endswith(f"rebuild with: screen engines build --bundle {copy}")
