"""Real TensorRT builds and runs on a GPU, from a bundle written with the onnx helper API (no torch).

Skipped, with the reason, where TensorRT, pycuda or a GPU is missing; ``make test-gpu`` runs
only these and fails on any skip, so the GPU check cannot pass without a GPU.
"""

import dataclasses
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from engine_helpers import read_json, write_images
from onnx_bundle import SIZE

from screening.backends.onnxrt import OnnxRuntimeBackend
from screening.backends.tensorrt import TensorRTBackend, probe_tensorrt
from screening.cli import cli
from screening.engines.buffers import BufferSpec
from screening.engines.environment import detect_environment
from screening.engines.naming import engine_dir, engine_key, timing_cache_path
from screening.errors import ScreeningError
from screening.manifest import save_manifest, sha256_file
from screening.preprocess import softmax

REPO = Path(__file__).resolve().parents[3]
ENV = detect_environment()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(ENV.problem), reason=ENV.problem or "GPU ready")]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(onnx_bundle, tmp_path_factory):
    """The onnx-helper bundle copied and built for this GPU (batch 1..4, tuned for 2, detailed layers)."""
    from screening.engines.build import build_engines

    source, manifest = onnx_bundle
    bundle = tmp_path_factory.mktemp("gpu") / "tiny"
    shutil.copytree(source, bundle)
    cache = tmp_path_factory.mktemp("cache")
    lines = []
    folder, record = build_engines(bundle, manifest, ENV, opt_batch=2, max_batch=4, workspace_gb=1.0,
                                   echo=lines.append, cache_dir=cache, detailed_layers=True)
    return bundle, manifest, folder, record, cache, lines


def feeds(manifest, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    seg = rng.normal(0, 1, (n, 3, SIZE, SIZE)).astype(np.float32)
    cls = rng.normal(0, 1, (n, 3, SIZE, SIZE)).astype(np.float32)
    meta = np.zeros((n, manifest.metadata.dim), np.float32)
    meta[np.arange(n), rng.integers(0, 10, n)] = 1
    return seg, cls, meta


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
    assert not any("TensorRT error" in line for line in lines), lines
    assert probe_tensorrt(bundle, manifest).usable


def test_tensorrt_sees_no_fp16_shape_tensor_and_builds_mostly_fp16(built):
    import tensorrt as trt

    _, _, folder, *_ = built
    inspect = load_bench("trt_inspect")
    for role in ("segmenter", "classifier"):
        network = inspect.inspect_network(trt, folder / f"{role}.fp16.onnx")
        assert network["parsed"] and network["errors"] == [] and network["fp16_shape_tensors"] == [], network
        engine = inspect.inspect_engine(trt, folder / f"{role}.plan")
        counts = engine["by_output_type"]
        assert counts.get("fp16", 0) > 0 and "unknown (build with --detailed-layers)" not in counts, engine
        if role == "segmenter":  # convolutions, activations and the Resize: all FP16
            assert counts["fp16"] > counts.get("fp32", 0), engine


def test_engines_agree_with_onnxruntime_and_split_large_batches(built):
    bundle, manifest, *_ = built
    n = 7  # above the max batch of 4: split into 4 + 3
    seg, cls, meta = feeds(manifest, n)
    with TensorRTBackend(bundle, manifest, batch_size=n) as trt, OnnxRuntimeBackend(bundle, manifest) as ort:
        fp16, fp32 = trt.run_batch(seg, cls, meta), ort.run_batch(seg, cls, meta)
        again = trt.run_batch(seg[:2], cls[:2], meta[:2])
    assert fp16.mask.shape == (n, 1, SIZE, SIZE) and fp16.logits.shape == (n, 7)
    assert np.abs(fp16.mask - fp32.mask).max() < 0.01
    assert np.abs(softmax(fp16.logits) - softmax(fp32.logits)).max() < 0.02
    assert np.allclose(again.logits, fp16.logits[:2], atol=1e-3)


def test_entering_and_leaving_leaves_no_cuda_context_behind(built):
    import pycuda.driver as cuda

    bundle, manifest, *_ = built
    seg, cls, meta = feeds(manifest, 2)
    for _ in range(3):
        with TensorRTBackend(bundle, manifest, batch_size=2) as backend:
            backend.run_batch(seg, cls, meta)
        assert cuda.Context.get_current() is None  # pycuda's detach() of a primary context left one each time


def test_an_output_shape_that_does_not_fit_its_buffer_names_the_tensor(built):
    bundle, manifest, *_ = built
    seg, cls, meta = feeds(manifest, 2)
    with TensorRTBackend(bundle, manifest, batch_size=2) as backend:
        wrong = dict(backend.plan.device, **{"classifier/logits": BufferSpec((4, 9))})
        backend.plan = dataclasses.replace(backend.plan, device=wrong)
        with pytest.raises(ScreeningError, match=r"TensorRT's classifier output 'logits' has shape \[2, 7\] for a "
                                                 r"batch of 2, but its buffer is planned for \[2, 9\]"):
            backend.run_batch(seg, cls, meta)


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
    changed = dataclasses.replace(manifest, classifier=dataclasses.replace(
        manifest.classifier, sha256=sha256_file(copy / "classifier.onnx")))
    save_manifest(changed, copy)
    probe = probe_tensorrt(copy, changed)
    assert not probe.usable
    assert "classifier.onnx changed since the build" in probe.reason
    assert probe.reason.endswith(f"rebuild with: screen engines build --bundle {copy}")


def test_a_second_build_loads_the_timing_cache_and_a_rejected_one_is_left_alone(built, tmp_path):
    from screening.engines.build import build_engines

    bundle, manifest, _, _, cache, _ = built
    lines = []
    build_engines(bundle, manifest, ENV, opt_batch=2, max_batch=4, workspace_gb=1.0, echo=lines.append,
                  cache_dir=cache)
    assert f"  timing cache: {timing_cache_path(ENV.gpu, ENV.tensorrt_version, cache)}" in lines
    damaged = timing_cache_path(ENV.gpu, ENV.tensorrt_version, tmp_path)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a timing cache")
    lines = []
    build_engines(bundle, manifest, ENV, opt_batch=2, max_batch=4, workspace_gb=1.0, echo=lines.append,
                  cache_dir=tmp_path)
    assert any(line.startswith(f"  TensorRT rejected the timing cache {damaged}") for line in lines), lines
    assert damaged.read_bytes() == b"not a timing cache"


def test_ctrl_c_stops_a_build_with_exit_code_130_and_records_nothing(built, tmp_path):
    source, manifest, *_ = built
    bundle = tmp_path / "tiny"
    shutil.copytree(source, bundle, ignore=shutil.ignore_patterns("trt"))
    env = dict(os.environ, SCREEN_CACHE_DIR=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "screening", "engines", "build", "--bundle", str(bundle)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    seen = []
    for line in process.stdout:  # wait until TensorRT is building, then press Ctrl-C
        seen.append(line)
        if "segmenter: building the engine" in line:
            time.sleep(0.3)
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(seen) + out + err
    assert "Interrupted (SIGINT): the engine build was stopped and nothing was recorded" in err
    folder = engine_dir(bundle, ENV.gpu, ENV.tensorrt_version)
    assert not (folder / "build.json").exists() and not (folder / "classifier.plan").exists()
