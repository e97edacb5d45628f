"""The TensorRT probe and the backend choice it drives, on a machine with or without TensorRT."""

import importlib.util

import pytest
from engine_helpers import H100, TRT, make_record, write_engine_folder

from screening.backends.tensorrt import TensorRTBackend, TensorRTProbe, probe_from_environment, probe_tensorrt
from screening.engines.environment import Environment
from screening.engines.naming import engine_key
from screening.errors import BackendUnavailable

GPU_MODULES = all(importlib.util.find_spec(m) is not None for m in ("tensorrt", "pycuda"))
MISSING_TRT = "TensorRT is not installed: install the GPU extra with pip install '.[gpu]'"
READY = Environment(TRT, gpu=H100)


def test_probe_passes_on_the_environment_problem():
    env = Environment(None, tensorrt_error=MISSING_TRT)
    assert probe_from_environment("engines/x", None, env) == TensorRTProbe(False, MISSING_TRT)


def test_probe_finds_the_fresh_engine(fake_bundle):
    bundle, manifest = fake_bundle
    folder = write_engine_folder(bundle, make_record(manifest))
    assert probe_from_environment(bundle, manifest, READY) == TensorRTProbe(
        True, f"TensorRT FP16 engine {engine_key(H100, TRT)}", folder, make_record(manifest))  # the record it checked


def test_probe_reports_a_stale_engine_with_the_rebuild_command(fake_bundle):
    bundle, manifest = fake_bundle
    write_engine_folder(bundle, make_record(manifest))
    newer = Environment("10.14.1.48", gpu=H100)
    write_engine_folder(bundle, make_record(manifest), trt="10.14.1.48")  # copied, record says 10.13
    probe = probe_from_environment(bundle, manifest, newer)
    assert not probe.usable and probe.engine_dir is None
    assert probe.reason == (f"TensorRT engine {engine_key(H100, '10.14.1.48')} is stale (built with TensorRT "
                            f"10.13.0.35, this machine has TensorRT 10.14.1.48); "
                            f"rebuild with: screen engines build --bundle {bundle}")


def test_open_backend_auto_falls_back_to_onnxruntime_with_the_probe_reason(fake_bundle, monkeypatch):
    # screening.backends.open_backend is the factory `screen folder` uses; it reads our probe.
    import screening.backends.tensorrt as trt_backend
    from screening.backends import open_backend

    bundle, manifest = fake_bundle
    monkeypatch.setattr(trt_backend, "detect_environment", lambda: READY)
    backend, note = open_backend("auto", bundle, manifest, batch_size=4)
    assert backend.name == "onnxruntime"
    assert note == ("auto picked onnxruntime: no TensorRT engines built for this bundle yet (NVIDIA H100 80GB HBM3 "
                    f"(sm90), TensorRT 10.13.0.35); build them with: screen engines build --bundle {bundle}")
    with pytest.raises(BackendUnavailable) as err:
        open_backend("tensorrt", bundle, manifest, batch_size=4)
    assert err.value.exit_code == 4 and str(err.value).startswith("no TensorRT engines built for this bundle yet")


def test_open_backend_picks_tensorrt_when_a_fresh_engine_exists(fake_bundle, monkeypatch):
    import screening.backends.tensorrt as trt_backend
    from screening.backends import open_backend

    bundle, manifest = fake_bundle
    write_engine_folder(bundle, make_record(manifest))
    monkeypatch.setattr(trt_backend, "detect_environment", lambda: READY)
    backend, note = open_backend("auto", bundle, manifest, batch_size=16)
    assert isinstance(backend, TensorRTBackend)  # constructed, not entered: nothing touches a GPU yet
    assert note == f"auto: TensorRT FP16 engine {engine_key(H100, TRT)}"


@pytest.mark.skipif(GPU_MODULES, reason="tensorrt and pycuda are installed on this machine")
def test_probe_on_this_machine_names_the_gpu_extra(fake_bundle):
    bundle, manifest = fake_bundle
    probe = probe_tensorrt(bundle, manifest)
    assert not probe.usable
    assert "pip install '.[gpu]'" in probe.reason and "\n" not in probe.reason


@pytest.mark.skipif(GPU_MODULES, reason="tensorrt and pycuda are installed on this machine")
def test_backend_refuses_to_start_without_tensorrt(fake_bundle):
    bundle, manifest = fake_bundle
    with pytest.raises(BackendUnavailable, match=r"pip install '\.\[gpu\]'"):
        with TensorRTBackend(bundle, manifest, batch_size=4):
            pass


def test_backend_outside_a_with_block_refuses_to_run(fake_bundle):
    bundle, manifest = fake_bundle
    with pytest.raises(RuntimeError, match="not active"):
        TensorRTBackend(bundle, manifest, batch_size=4).run_batch(None, None, None)
