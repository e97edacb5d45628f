"""Fixtures of the validation tests: synthetic results with known truth (synthetic.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test helper modules beside this file import by plain name (as tests/screening/conftest.py does).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import Synthetic, write_synthetic  # noqa: E402


@pytest.fixture
def synthetic(tmp_path: Path, tiny_bundle: Path):
    def make(**kwargs) -> Synthetic:
        return write_synthetic(tmp_path / kwargs.pop("name", "run"), tiny_bundle, **kwargs)

    return make
