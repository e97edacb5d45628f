"""Tests for the ONNX Runtime runner, the runner factory and the bundle backend choice."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bundle_factory import INPUT_SIZE, build_bundle, reference_outputs, segmenter_model
from screening.backends import TENSORRT_NOT_INSTALLED, check_input_size, create_runner, open_backend
from screening.backends.onnxrt import OnnxRuntimeBackend, OnnxRuntimeRunner, physical_cores
from screening.errors import BackendUnavailable, BundleError, InputError
from screening.manifest import load_manifest


def _inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    seg = rng.normal(size=(n, 3, *INPUT_SIZE)).astype(np.float32)
    cls = rng.normal(size=(n, 3, *INPUT_SIZE)).astype(np.float32)
    meta = np.zeros((n, 20), np.float32)
    meta[np.arange(n), rng.integers(0, 20, n)] = 1.0
    return seg, cls, meta


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `from .tensorrt import ...` fail, as on an install without the [gpu] extra."""
    monkeypatch.setitem(sys.modules, "screening.backends.tensorrt", None)


def _fake_tensorrt(monkeypatch: pytest.MonkeyPatch, probe) -> list[tuple]:
    """A stand-in TensorRT module (the real one needs a GPU); returns the constructor calls."""
    calls: list[tuple] = []

    class TensorRTBackend:
        def __init__(self, bundle_dir, manifest, batch_size, *, stall_s):
            calls.append((bundle_dir, manifest.tag, batch_size, stall_s))

    module = types.ModuleType("screening.backends.tensorrt")
    module.probe_tensorrt = probe
    module.TensorRTBackend = TensorRTBackend
    monkeypatch.setitem(sys.modules, "screening.backends.tensorrt", module)
    return calls


def test_runner_outputs_match_the_numpy_reference(tiny_bundle: Path) -> None:
    seg, cls, meta = _inputs(3)
    want_mask, want_logits = reference_outputs(seg, cls, meta)
    with OnnxRuntimeRunner(tiny_bundle / "segmenter.onnx") as segmenter:
        mask = segmenter.infer({"image": seg})["mask"]
    with OnnxRuntimeRunner(tiny_bundle / "classifier.onnx") as classifier:
        logits = classifier.infer({"image": cls, "mask": mask, "meta": meta})["logits"]
    np.testing.assert_allclose(mask, want_mask, atol=1e-5)
    np.testing.assert_allclose(logits, want_logits, atol=1e-4)
    assert classifier.calls == 1 and classifier.inference_time > 0


def test_session_uses_one_thread_per_physical_core_sequentially(tiny_bundle: Path) -> None:
    runner = OnnxRuntimeRunner(tiny_bundle / "segmenter.onnx")
    options = runner.session_options()
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))
    assert options.intra_op_num_threads == physical_cores()
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert OnnxRuntimeRunner(tiny_bundle / "segmenter.onnx", threads=1).session_options().intra_op_num_threads == 1


def test_session_threads_do_not_spin(tiny_bundle: Path) -> None:
    """Two sessions per bundle on few cores: spinning idle threads would starve each other."""
    options = OnnxRuntimeRunner(tiny_bundle / "segmenter.onnx").session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_input_specs_come_from_the_session(tiny_bundle: Path) -> None:
    with OnnxRuntimeRunner(tiny_bundle / "classifier.onnx") as runner:
        specs = runner.input_specs()
        providers = runner.session.get_providers()
    assert {name: spec.shape for name, spec in specs.items()} == {
        "image": (None, 3, 32, 32), "mask": (None, 1, 32, 32), "meta": (None, 20)}
    assert all(spec.dtype == np.float32 for spec in specs.values())
    assert providers == ["CPUExecutionProvider"]


def test_feed_is_checked_against_the_model(tiny_bundle: Path) -> None:
    runner = OnnxRuntimeRunner(tiny_bundle / "segmenter.onnx", name="segmenter")
    with pytest.raises(RuntimeError, match="runner segmenter is not active: use it inside a with-block"):
        runner.infer({"image": np.zeros((1, 3, 32, 32), np.float32)})
    with runner, pytest.raises(ValueError) as info:
        runner.infer({"image": np.zeros((1, 3, 16, 16), np.float32)})
    assert str(info.value) == "segmenter: input 'image' has shape (1, 3, 16, 16), model expects (None, 3, 32, 32)"


def test_create_runner_by_name_and_unknown_names_list_the_valid_ones(tiny_bundle: Path) -> None:
    runner = create_runner("onnxruntime", tiny_bundle / "segmenter.onnx", threads=1)
    assert isinstance(runner, OnnxRuntimeRunner) and runner.threads == 1
    with pytest.raises(InputError) as info:
        create_runner("tensorflow", tiny_bundle / "segmenter.onnx")
    assert str(info.value) == "unknown runner 'tensorflow': choose one of onnxruntime"


def test_bundle_backend_chains_segmenter_and_classifier(tiny_bundle: Path) -> None:
    manifest = load_manifest(tiny_bundle)
    seg, cls, meta = _inputs(4, seed=1)
    want_mask, want_logits = reference_outputs(seg, cls, meta)
    backend = OnnxRuntimeBackend(tiny_bundle, manifest)
    with backend:
        out = backend.run_batch(seg, cls, meta)
    np.testing.assert_allclose(out.mask, want_mask, atol=1e-5)
    np.testing.assert_allclose(out.logits, want_logits, atol=1e-4)
    assert re.fullmatch(r"onnxruntime \S+ \(CPU, \d+ threads?\)", backend.description)


def test_model_with_fixed_batch_is_refused_on_open(tmp_path: Path) -> None:
    build_bundle(tmp_path / "b", segmenter=segmenter_model(fixed_batch=1))
    backend = OnnxRuntimeBackend(tmp_path / "b", load_manifest(tmp_path / "b"))
    with pytest.raises(BundleError) as info:
        backend.__enter__()
    assert str(info.value) == ("segmenter.onnx input 'image' has shape [1, 3, 32, 32] "
                               "but the manifest says ['N', 3, 32, 32]")


def test_model_of_another_input_size_is_refused_on_open(tmp_path: Path) -> None:
    build_bundle(tmp_path / "b", segmenter=segmenter_model((48, 48)))
    backend = OnnxRuntimeBackend(tmp_path / "b", load_manifest(tmp_path / "b"))
    with pytest.raises(BundleError) as info:
        backend.__enter__()
    assert str(info.value) == ("segmenter.onnx input 'image' has shape ['?', 3, 48, 48] "
                               "but the manifest says ['N', 3, 32, 32]")


def test_manifest_shapes_must_use_its_input_size(tiny_bundle: Path) -> None:
    manifest = dataclasses.replace(load_manifest(tiny_bundle), input_size=(48, 48))
    with pytest.raises(BundleError) as info:
        check_input_size(manifest)
    assert str(info.value) == ("segmenter input 'image' has shape ['N', 3, 32, 32] in the manifest "
                               "but input_size is 48x48")


def test_auto_without_tensorrt_runs_onnxruntime_and_says_why(tiny_bundle: Path, no_tensorrt: None) -> None:
    backend, note = open_backend("auto", tiny_bundle, load_manifest(tiny_bundle), batch_size=4)
    assert isinstance(backend, OnnxRuntimeBackend)
    assert note == "auto picked onnxruntime: TensorRT backend not installed: pip install '.[gpu]'"


def test_tensorrt_requested_but_unavailable_is_an_error(tiny_bundle: Path, no_tensorrt: None) -> None:
    with pytest.raises(BackendUnavailable) as info:
        open_backend("tensorrt", tiny_bundle, load_manifest(tiny_bundle), batch_size=4)
    assert str(info.value) == TENSORRT_NOT_INSTALLED
    assert info.value.exit_code == 4


def test_explicit_onnxruntime_and_unknown_choice(tiny_bundle: Path) -> None:
    manifest = load_manifest(tiny_bundle)
    backend, note = open_backend("onnxruntime", tiny_bundle, manifest, batch_size=4)
    assert isinstance(backend, OnnxRuntimeBackend) and note == "onnxruntime requested"
    with pytest.raises(InputError) as info:
        open_backend("cuda", tiny_bundle, manifest, batch_size=4)
    assert str(info.value) == "unknown backend 'cuda': choose one of auto, onnxruntime, tensorrt"


def test_auto_picks_tensorrt_when_its_probe_says_usable(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = lambda bundle_dir, manifest, stall_s: types.SimpleNamespace(usable=True, reason="engine sm90 fp16 matches")
    calls = _fake_tensorrt(monkeypatch, probe)
    backend, note = open_backend("auto", tiny_bundle, load_manifest(tiny_bundle), batch_size=6, stall_s=7.5)
    assert type(backend).__name__ == "TensorRTBackend"
    assert calls == [(tiny_bundle, "tiny@1.0", 6, 7.5)]  # --decode-timeout bounds its reads of the engines
    assert note == "auto: engine sm90 fp16 matches"


def test_stale_engine_reason_is_passed_on(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = "engine built for TensorRT 10.3 is stale: run `screen engines build --bundle b`"
    _fake_tensorrt(monkeypatch, lambda b, m, s: types.SimpleNamespace(usable=False, reason=reason))
    manifest = load_manifest(tiny_bundle)
    backend, note = open_backend("auto", tiny_bundle, manifest, batch_size=2)
    assert isinstance(backend, OnnxRuntimeBackend) and note == f"auto picked onnxruntime: {reason}"
    with pytest.raises(BackendUnavailable, match=re.escape(reason)):
        open_backend("tensorrt", tiny_bundle, manifest, batch_size=2)


def test_a_crashing_tensorrt_probe_falls_back_in_auto(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def probe(bundle_dir, manifest, stall_s):
        raise RuntimeError("CUDA driver version is insufficient")

    _fake_tensorrt(monkeypatch, probe)
    backend, note = open_backend("auto", tiny_bundle, load_manifest(tiny_bundle), batch_size=2)
    assert isinstance(backend, OnnxRuntimeBackend)
    assert note == "auto picked onnxruntime: TensorRT probe failed: RuntimeError: CUDA driver version is insufficient"



def test_a_bundle_replaced_after_its_manifest_was_read_is_refused_not_run_under_the_old_manifest(
        tmp_path: Path) -> None:
    """`export --force` swaps whole bundle folders: one landing between the manifest's check and the
    sessions' loading must not run the new models under the old temperature, thresholds and name."""
    import onnx

    bundle = tmp_path / "bundle"
    build_bundle(bundle)
    manifest = load_manifest(bundle)  # checked: the files match it now
    retrained = onnx.load(str(bundle / "segmenter.onnx"))
    retrained.producer_name = "another training run"  # other bytes, still a valid model
    onnx.save(retrained, bundle / "segmenter.onnx")
    with pytest.raises(BundleError, match="segmenter.onnx changed after its manifest was read"):
        with OnnxRuntimeBackend(bundle, manifest):
            pass
    # Without a manifest's sha256 (a runner opened on its own) the file is simply loaded.
    with OnnxRuntimeRunner(bundle / "segmenter.onnx") as runner:
        assert runner.session is not None
