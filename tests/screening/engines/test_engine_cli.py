"""`screen engines build|list|verify`: messages and exit codes, with and without TensorRT."""

import importlib.util

import pytest
from click.testing import CliRunner
from engine_helpers import H100, TRT, make_record, write_engine_folder

import screening.backends.tensorrt as trt_backend
import screening.engines.environment as environment
from screening.cli import cli
from screening.engines.environment import Environment
from screening.engines.naming import GpuInfo, engine_key

GPU_MODULES = all(importlib.util.find_spec(m) is not None for m in ("tensorrt", "pycuda"))
MISSING_TRT = "TensorRT is not installed: install the GPU extra with pip install '.[gpu]'"
KEY = engine_key(H100, TRT)


def invoke(*args):
    return CliRunner().invoke(cli, ["engines", *map(str, args)], prog_name="screen")


@pytest.fixture
def machine(monkeypatch):
    """Pretend this machine has the given TensorRT/pycuda/GPU facts."""
    def set_env(env: Environment) -> None:
        monkeypatch.setattr(environment, "detect_environment", lambda: env)
        monkeypatch.setattr(trt_backend, "detect_environment", lambda: env)
    return set_env


@pytest.mark.parametrize("command", [[], ["build"], ["list"], ["verify"]])
def test_every_command_has_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: screen engines" in result.output
    assert len(result.output.split("Options:")[0].strip().splitlines()) >= 3


def test_default_bundle_is_the_one_screen_folder_uses(monkeypatch, tmp_path):
    monkeypatch.setenv("SCREEN_BUNDLE", str(tmp_path / "missing"))
    result = invoke("list")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"Error: no model bundle at {tmp_path / 'missing'} ($SCREEN_BUNDLE)")


def test_build_without_tensorrt_exits_4_naming_the_gpu_extra(fake_bundle, machine):
    machine(Environment(None, tensorrt_error=MISSING_TRT))
    result = invoke("build", "--bundle", fake_bundle[0])
    assert result.exit_code == 4
    assert result.stderr == f"Error: {MISSING_TRT}\n"


def test_verify_without_tensorrt_exits_4(fake_bundle, machine):
    machine(Environment(None, tensorrt_error=MISSING_TRT))
    result = invoke("verify", "--bundle", fake_bundle[0])
    assert result.exit_code == 4
    assert result.stderr == f"Error: {MISSING_TRT}\n"


@pytest.mark.skipif(GPU_MODULES, reason="tensorrt and pycuda are installed on this machine")
def test_build_and_verify_on_this_cpu_machine_exit_4(fake_bundle):
    for command in ("build", "verify"):
        result = invoke(command, "--bundle", fake_bundle[0])
        assert result.exit_code == 4
        assert result.stderr.startswith("Error: ") and "pip install '.[gpu]'" in result.stderr
        assert result.stderr.count("\n") == 1


def test_verify_with_a_stale_engine_exits_4_with_the_rebuild_command(fake_bundle, machine):
    bundle, manifest = fake_bundle
    write_engine_folder(bundle, make_record(manifest, trt="10.12.0.36"))
    machine(Environment(TRT, gpu=H100))
    result = invoke("verify", "--bundle", bundle)
    assert result.exit_code == 4
    assert result.stderr == (f"Error: TensorRT engine {KEY} is stale (built with TensorRT 10.12.0.36, this machine "
                             f"has TensorRT 10.13.0.35); rebuild with: screen engines build --bundle {bundle}\n")


@pytest.mark.parametrize("options, message", [
    (["--opt-batch", "64", "--max-batch", "32"], "--opt-batch 64 is larger than --max-batch 32"),
    (["--max-batch", "0"], "--max-batch must be at least 1, got 0"),
    (["--workspace", "0"], "--workspace must be a positive number of GB, got 0.0"),
])
def test_bad_build_options_exit_2_before_looking_for_tensorrt(fake_bundle, machine, options, message):
    machine(Environment(None, tensorrt_error=MISSING_TRT))
    result = invoke("build", "--bundle", fake_bundle[0], *options)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"


def test_missing_bundle_exits_3(tmp_path):
    result = invoke("list", "--bundle", tmp_path / "nope")
    assert result.exit_code == 3
    assert result.stderr == f"Error: bundle folder {tmp_path / 'nope'} does not exist\n"


def test_modified_bundle_exits_3(fake_bundle):
    bundle, _ = fake_bundle
    (bundle / "classifier.onnx").write_bytes(b"tampered")
    result = invoke("list", "--bundle", bundle)
    assert result.exit_code == 3
    assert "classifier.onnx does not match its manifest sha256" in result.stderr


def test_list_shows_the_engine_that_fits_this_machine(fake_bundle, machine):
    bundle, manifest = fake_bundle
    write_engine_folder(bundle, make_record(manifest, warnings=["w1", "w2"]))
    l4 = GpuInfo("NVIDIA L4", (8, 9))
    write_engine_folder(bundle, make_record(manifest, gpu=l4), gpu=l4)
    machine(Environment(TRT, gpu=H100))
    result = invoke("list", "--bundle", bundle)
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"Engines of tiny@0.1 in {bundle / 'trt'}:",
        f"  {KEY}: fits this machine",
        "      NVIDIA H100 80GB HBM3 (sm90), TensorRT 10.13.0.35, batch 1..8 (tuned for 4), "
        "built 2025-02-03T04:05:06+00:00, 2 builder warnings",
        "  nvidia-l4-sm89-trt10.13.0.35-fp16: for another GPU or TensorRT version",
        "      NVIDIA L4 (sm89), TensorRT 10.13.0.35, batch 1..8 (tuned for 4), "
        "built 2025-02-03T04:05:06+00:00, 0 builder warnings",
        f"This machine: NVIDIA H100 80GB HBM3 (sm90), TensorRT 10.13.0.35: needs {KEY}",
    ]


def test_list_without_engines_says_how_to_build_them(fake_bundle, machine):
    bundle, _ = fake_bundle
    machine(Environment(TRT, gpu=H100))
    result = invoke("list", "--bundle", bundle)
    assert result.output.splitlines() == [
        f"Engines of tiny@0.1 in {bundle / 'trt'}:",
        f"  none built yet; on the GPU machine run: screen engines build --bundle {bundle}",
        f"This machine: NVIDIA H100 80GB HBM3 (sm90), TensorRT 10.13.0.35: needs {KEY}; "
        f"build it with: screen engines build --bundle {bundle}",
    ]


def test_list_says_when_it_cannot_know_the_gpu(fake_bundle, machine, monkeypatch):
    bundle, manifest = fake_bundle
    write_engine_folder(bundle, make_record(manifest))
    monkeypatch.setenv("SCREEN_BUNDLE", str(bundle))  # the default bundle follows $SCREEN_BUNDLE
    machine(Environment(None, MISSING_TRT, "pycuda is not installed: install the GPU extra with pip install '.[gpu]'",
                        None, "its GPU is unknown (pycuda is missing and nvidia-smi was not found)"))
    result = invoke("list")
    assert result.exit_code == 0
    assert result.output.splitlines()[1] == f"  {KEY}: unknown: this machine's GPU cannot be determined"
    assert result.output.splitlines()[-1] == ("Cannot tell which engine fits this machine: its GPU is unknown "
                                              "(pycuda is missing and nvidia-smi was not found).")


def test_list_with_a_gpu_but_no_tensorrt(fake_bundle, machine):
    bundle, manifest = fake_bundle
    write_engine_folder(bundle, make_record(manifest))
    machine(Environment(None, MISSING_TRT, "", H100))
    result = invoke("list", "--bundle", bundle)
    assert result.output.splitlines()[1] == f"  {KEY}: built for this GPU; TensorRT is not installed here"
    assert result.output.splitlines()[-1] == f"This machine: NVIDIA H100 80GB HBM3 (sm90); {MISSING_TRT}."


def test_list_runs_on_this_machine_without_tensorrt(fake_bundle):
    result = invoke("list", "--bundle", fake_bundle[0])
    assert result.exit_code == 0
    assert result.output.startswith("Engines of tiny@0.1 in ")


def test_list_with_a_tensorrt_too_old_for_fp16_engines(fake_bundle, machine):
    from screening.engines.environment import tensorrt_version_problem

    bundle, _ = fake_bundle
    machine(Environment("10.3.0.26", tensorrt_version_problem("10.3.0.26"), "", H100))
    result = invoke("list", "--bundle", bundle)
    assert result.output.splitlines()[-1] == (
        "This machine: NVIDIA H100 80GB HBM3 (sm90); TensorRT 10.3.0.26 is too old: FP16 engines need "
        "TensorRT 10.12 or newer (upgrade with pip install '.[gpu]').")
