"""Tests for bench/ort_variants.py and bench/screen_with.py: session settings by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

import ort_variants
from harness import REPO
from screening.backends.onnxrt import OnnxRuntimeRunner


def options_of(variant: str, model: Path) -> ort.SessionOptions:
    return ort_variants.tune(OnnxRuntimeRunner(model, threads=2).session_options(), ort_variants.VARIANTS[variant])


def test_variants_change_only_their_settings(tiny_bundle: Path) -> None:
    model = tiny_bundle / "segmenter.onnx"
    runtime = options_of("runtime", model)
    assert runtime.intra_op_num_threads == 2
    assert runtime.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options_of("no-spin", model).get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options_of("spin-stop", model).get_session_config_entry("session.force_spinning_stop") == "1"
    assert options_of("basic", model).graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options_of("1-thread", model).intra_op_num_threads == 1
    parallel = options_of("fused-parallel", model)
    assert parallel.execution_mode == ort.ExecutionMode.ORT_PARALLEL and parallel.inter_op_num_threads == 2
    assert "fused" not in ort_variants.SESSION_VARIANTS and "no-spin" in ort_variants.SESSION_VARIANTS


def test_install_applies_a_variant_to_every_runner_of_the_process(tiny_bundle: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Restored after the test: install() patches the class for the whole process.
    monkeypatch.setattr(OnnxRuntimeRunner, "session_options", OnnxRuntimeRunner.session_options)
    ort_variants.install("1-thread")
    with OnnxRuntimeRunner(tiny_bundle / "segmenter.onnx", threads=2) as runner:
        assert runner.session.get_session_options().intra_op_num_threads == 1


def test_screen_with_refuses_an_unknown_variant() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "screen_with.py"), "fused", "folder", "x"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == ("usage: screen_with.py VARIANT SCREEN-ARGS...; VARIANT is one of "
                                   "runtime, no-spin, spin-stop, extended, basic, 1-thread")
