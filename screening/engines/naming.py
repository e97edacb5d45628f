"""Where a bundle's engines live: one folder per GPU model, compute capability and TensorRT version.

An engine only runs on the GPU architecture and the exact TensorRT version it was built with,
so both are part of its folder name: ``engines/<bundle>/trt/<gpu-slug>-sm<major><minor>-trt<version>-fp16/``.
The timing cache is per GPU and TensorRT version too, but not per bundle, so it lives in the
user's cache folder and speeds up the build of every bundle on that machine.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import PRECISION

TRT_FOLDER = "trt"  # inside the bundle folder; never committed (see .gitignore)


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built for or run on."""

    name: str  # as the driver reports it, e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: tuple[int, int]  # (major, minor), e.g. (9, 0)

    @property
    def sm(self) -> str:
        """``sm<major><minor>``, e.g. ``sm90``."""
        major, minor = self.compute_capability
        return f"sm{major}{minor}"

    def describe(self) -> str:
        """Human form, e.g. ``NVIDIA H100 80GB HBM3 (sm90)``."""
        return f"{self.name} ({self.sm})"


def gpu_slug(name: str) -> str:
    """Lower-case GPU name with every run of non-alphanumerics turned into one '-'.

    Example: ``"NVIDIA GeForce RTX 4090 (Laptop)"`` -> ``"nvidia-geforce-rtx-4090-laptop"``.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "unknown-gpu"


def _version_slug(version: str) -> str:
    # Dots stay: "trt10.13.0.35" reads as a version; anything else odd becomes '-'.
    return re.sub(r"[^0-9a-z.]+", "-", version.lower()).strip("-")


def engine_key(gpu: GpuInfo, tensorrt_version: str, precision: str = PRECISION) -> str:
    """Folder name of the engines for one GPU and TensorRT version.

    Example: ``nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35-fp16``.
    """
    return f"{gpu_slug(gpu.name)}-{gpu.sm}-trt{_version_slug(tensorrt_version)}-{precision}"


def trt_root(bundle_dir: Path) -> Path:
    """The folder holding all engine folders of a bundle."""
    return Path(bundle_dir) / TRT_FOLDER


def engine_dir(bundle_dir: Path, gpu: GpuInfo, tensorrt_version: str) -> Path:
    """The engine folder this GPU and TensorRT version would use in a bundle."""
    return trt_root(bundle_dir) / engine_key(gpu, tensorrt_version)


def default_cache_dir() -> Path:
    """``$SCREEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/lesion-screening``, else ``~/.cache/lesion-screening``."""
    if os.environ.get("SCREEN_CACHE_DIR"):
        return Path(os.environ["SCREEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lesion-screening"


def timing_cache_path(gpu: GpuInfo, tensorrt_version: str, cache_dir: Path | None = None) -> Path:
    """The TensorRT timing cache file for one GPU and TensorRT version, shared by all bundles.

    Precision is not part of the name: one cache holds the timings of every kernel tried.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "tensorrt" / f"{gpu_slug(gpu.name)}-{gpu.sm}-trt{_version_slug(tensorrt_version)}.timing-cache"
