"""Batch screening of dermoscopy images: the runtime (no torch, no training code)."""

__version__ = "0.1.0"
