"""Fixtures for the engine tests (helpers live in engine_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from screening.manifest import Manifest

# pytest's importlib import mode does not put test folders on sys.path; the tests here import
# their helper module (engine_helpers.py, beside this file) by name.
sys.path.insert(0, str(Path(__file__).parent))
from engine_helpers import build_tiny_bundle, write_bundle  # noqa: E402
from fake_gpu import fake_gpu  # noqa: E402,F401  (a fixture: TensorRTBackend on stand-in GPU modules)
from onnx_bundle import build_onnx_bundle  # noqa: E402


@pytest.fixture
def fake_bundle(tmp_path: Path) -> tuple[Path, Manifest]:
    """A bundle whose model files are placeholder bytes: fine for anything that never runs them."""
    folder = tmp_path / "engines" / "tiny"
    return folder, write_bundle(folder, b"segmenter", b"classifier")


@pytest.fixture(scope="session")
def torch_bundle(tmp_path_factory) -> tuple[Path, Manifest]:
    """A real 64 px ONNX bundle exported by torch (skips when torch is absent)."""
    return build_tiny_bundle(tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture(scope="session")
def onnx_bundle(tmp_path_factory) -> tuple[Path, Manifest]:
    """A real 64 px ONNX bundle written with the onnx helper API: no torch needed (the GPU tests use it)."""
    return build_onnx_bundle(tmp_path_factory.mktemp("onnx_bundles") / "tiny")
