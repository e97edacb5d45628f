"""What this machine offers for TensorRT: the TensorRT version, pycuda, and the GPU.

``detect_environment`` imports TensorRT and pycuda lazily and never raises: every problem
becomes a one-line reason, so ``screen engines list`` and ``--backend auto`` work on a CPU-only
install. The decisions on top of these facts are plain functions (see ``staleness``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from . import GPU_EXTRA_HINT
from .naming import GpuInfo

# Strongly typed networks built from a mixed-precision ONNX need 10.12+ (TensorRT 11 has no
# other way to build FP16).
MIN_TENSORRT = (10, 12)


@dataclass(frozen=True)
class Environment:
    """TensorRT, pycuda and GPU facts of this machine; an empty ``*_error`` means available."""

    tensorrt_version: str | None  # e.g. "10.13.0.35"; None when TensorRT cannot be imported
    tensorrt_error: str = ""  # one line: why TensorRT is unusable
    pycuda_error: str = ""  # one line: why pycuda is unusable
    gpu: GpuInfo | None = None  # the first visible GPU
    gpu_error: str = ""  # one line: why no GPU is known

    @property
    def problem(self) -> str:
        """The first reason TensorRT engines cannot run here, or '' when they can."""
        return self.tensorrt_error or self.pycuda_error or self.gpu_error


def one_line(text: object) -> str:
    """Collapse an exception text or tool output onto one line."""
    return " ".join(str(text).split())


def parse_version(version: str) -> tuple[int, ...]:
    """Leading numeric components of a version string: ``"10.13.0.35"`` -> ``(10, 13, 0, 35)``."""
    numbers = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
    return tuple(numbers)


def tensorrt_version_problem(version: str) -> str:
    """'' when this TensorRT version can build and run our FP16 engines, else the reason."""
    if parse_version(version)[:2] < MIN_TENSORRT:
        wanted = ".".join(map(str, MIN_TENSORRT))
        return (f"TensorRT {version} is too old: FP16 engines need TensorRT {wanted} or newer "
                f"(upgrade with {GPU_EXTRA_HINT})")
    return ""


def import_problem(package: str, exc: BaseException) -> str:
    """The one-line message for a GPU package (``tensorrt`` or ``pycuda``) that failed to import."""
    shown = {"tensorrt": "TensorRT"}.get(package, package)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == package:
        return f"{shown} is not installed: install the GPU extra with {GPU_EXTRA_HINT}"
    return f"{shown} cannot be loaded ({one_line(exc)}): reinstall the GPU extra with {GPU_EXTRA_HINT}"


def parse_nvidia_smi(output: str) -> GpuInfo | None:
    """The first GPU of ``nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader`` output."""
    for line in output.splitlines():
        name, _, capability = line.rpartition(",")
        match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", capability)
        if name.strip() and match:
            return GpuInfo(name.strip(), (int(match.group(1)), int(match.group(2))))
    return None


def detect_tensorrt() -> tuple[str | None, str]:
    """(version, problem) of the installed TensorRT; version None when it cannot be imported."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or OSError when its shared libraries are missing
        return None, import_problem("tensorrt", exc)
    version = str(trt.__version__)
    return version, tensorrt_version_problem(version)


def detect_pycuda_gpu() -> tuple[GpuInfo | None, str, str]:
    """(gpu, pycuda problem, gpu problem) through pycuda's driver API."""
    try:
        import pycuda.driver as cuda
    except Exception as exc:
        return None, import_problem("pycuda", exc), ""
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return None, "", "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
        device = cuda.Device(0)
        major, minor = device.compute_capability()
        return GpuInfo(str(device.name()), (int(major), int(minor))), "", ""
    except Exception as exc:  # pycuda.driver.Error subclasses: no driver, no device
        return None, "", f"no usable CUDA GPU ({one_line(exc)})"


def detect_nvidia_smi_gpu() -> tuple[GpuInfo | None, str]:
    """(gpu, problem) from ``nvidia-smi``, for reporting on machines without pycuda."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "nvidia-smi was not found"
    try:
        done = subprocess.run([exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi failed ({one_line(exc)})"
    gpu = parse_nvidia_smi(done.stdout)
    if gpu is None:
        return None, f"nvidia-smi reported no GPU ({one_line(done.stderr or done.stdout) or 'no output'})"
    return gpu, ""


def detect_environment() -> Environment:
    """Gather the facts, importing TensorRT and pycuda lazily; never raises."""
    version, trt_problem = detect_tensorrt()
    gpu, pycuda_problem, gpu_problem = detect_pycuda_gpu()
    if gpu is None and pycuda_problem:
        # Without pycuda nothing can run, but naming the GPU still tells `engines list` which
        # engine would fit once the GPU extra is installed.
        gpu, smi_problem = detect_nvidia_smi_gpu()
        if gpu is None:
            gpu_problem = f"its GPU is unknown (pycuda is missing and {smi_problem})"
    return Environment(tensorrt_version=version, tensorrt_error=trt_problem,
                       pycuda_error=pycuda_problem, gpu=gpu, gpu_error=gpu_problem)
