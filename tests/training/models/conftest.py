"""Fixtures shared by the model tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """The hub as on a machine without network: offline, with an empty cache (fails in seconds)."""
    import huggingface_hub.constants as hub

    # Set on the constants module because huggingface_hub reads the environment only at import.
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
