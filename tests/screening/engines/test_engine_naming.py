"""Engine folder names, paths and the timing cache location."""

from pathlib import Path

import pytest
from engine_helpers import H100

from screening.engines import rebuild_command
from screening.engines.naming import GpuInfo, engine_dir, engine_key, gpu_slug, timing_cache_path


@pytest.mark.parametrize("name, slug", [
    ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
    ("NVIDIA GeForce RTX 4090 (Laptop)", "nvidia-geforce-rtx-4090-laptop"),
    ("Tesla T4", "tesla-t4"),
    ("NVIDIA A100-SXM4-40GB", "nvidia-a100-sxm4-40gb"),
    ("  ", "unknown-gpu"),
])
def test_gpu_slug_is_lower_case_with_dashes(name, slug):
    assert gpu_slug(name) == slug


def test_engine_key_names_gpu_architecture_tensorrt_and_precision():
    assert engine_key(H100, "10.13.0.35") == "nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35-fp16"
    rtx = GpuInfo("NVIDIA GeForce RTX 3090", (8, 6))
    assert engine_key(rtx, "11.0.0") == "nvidia-geforce-rtx-3090-sm86-trt11.0.0-fp16"


def test_engine_dir_is_under_the_bundle_trt_folder(tmp_path):
    assert engine_dir(tmp_path / "engines" / "starter", H100, "10.13.0.35") == (
        tmp_path / "engines" / "starter" / "trt" / "nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35-fp16")


def test_gpu_describe():
    assert H100.describe() == "NVIDIA H100 80GB HBM3 (sm90)"


def test_timing_cache_is_per_gpu_and_tensorrt_version_not_per_bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("SCREEN_CACHE_DIR", str(tmp_path / "cache"))
    path = timing_cache_path(H100, "10.13.0.35")
    assert path == tmp_path / "cache" / "tensorrt" / "nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35.timing-cache"
    assert timing_cache_path(H100, "10.14.1") != path
    assert timing_cache_path(GpuInfo("NVIDIA L4", (8, 9)), "10.13.0.35") != path


def test_timing_cache_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SCREEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert timing_cache_path(H100, "10.13.0.35").parent == tmp_path / "lesion-screening" / "tensorrt"


def test_rebuild_command_quotes_odd_paths():
    assert rebuild_command(Path("engines/starter")) == "screen engines build --bundle engines/starter"
    assert rebuild_command(Path("my bundles/x")) == "screen engines build --bundle 'my bundles/x'"
