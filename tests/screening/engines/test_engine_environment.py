"""Facts about TensorRT, pycuda and the GPU, and the one-line reasons when they are missing."""

import importlib.util

import pytest

from screening.engines.environment import (
    Environment, detect_environment, import_problem, parse_nvidia_smi, parse_version, tensorrt_version_problem,
)
from screening.engines.naming import GpuInfo

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_PYCUDA = importlib.util.find_spec("pycuda") is not None


def test_parse_version_keeps_leading_numbers():
    assert parse_version("10.13.0.35") == (10, 13, 0, 35)
    assert parse_version("11.0.0b1") == (11, 0, 0)
    assert parse_version("10.12.0.post1") == (10, 12, 0)


def test_tensorrt_before_10_12_is_refused_with_the_upgrade_command():
    assert tensorrt_version_problem("10.11.0.33") == (
        "TensorRT 10.11.0.33 is too old: FP16 engines need TensorRT 10.12 or newer "
        "(upgrade with pip install '.[gpu]')")
    assert tensorrt_version_problem("10.12.0.36") == ""
    assert tensorrt_version_problem("11.1.0") == ""


def test_missing_package_message_names_the_gpu_extra():
    exc = ModuleNotFoundError("No module named 'tensorrt'", name="tensorrt")
    assert import_problem("tensorrt", exc) == (
        "TensorRT is not installed: install the GPU extra with pip install '.[gpu]'")


def test_broken_package_message_keeps_the_cause_on_one_line():
    exc = OSError("libnvinfer.so.10: cannot open shared object file:\n No such file or directory")
    assert import_problem("tensorrt", exc) == (
        "TensorRT cannot be loaded (libnvinfer.so.10: cannot open shared object file: No such file or directory): "
        "reinstall the GPU extra with pip install '.[gpu]'")


def test_parse_nvidia_smi_takes_the_first_gpu():
    out = "NVIDIA H100 80GB HBM3, 9.0\nNVIDIA L4, 8.9\n"
    assert parse_nvidia_smi(out) == GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))
    assert parse_nvidia_smi("No devices were found\n") is None
    assert parse_nvidia_smi("") is None


def test_environment_problem_is_the_first_missing_piece():
    assert Environment("10.13", "", "pycuda is not installed", None, "no GPU").problem == "pycuda is not installed"
    assert Environment("10.13", "", "", GpuInfo("x", (8, 0))).problem == ""


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed on this machine")
def test_detect_environment_without_tensorrt_says_how_to_install_it():
    env = detect_environment()
    assert env.tensorrt_version is None
    assert env.problem == "TensorRT is not installed: install the GPU extra with pip install '.[gpu]'"


@pytest.mark.skipif(HAS_PYCUDA, reason="pycuda is installed on this machine")
def test_detect_environment_without_pycuda_names_it():
    env = detect_environment()
    assert env.pycuda_error == "pycuda is not installed: install the GPU extra with pip install '.[gpu]'"
    assert env.gpu is not None or env.gpu_error.startswith("its GPU is unknown (pycuda is missing and nvidia-smi")
