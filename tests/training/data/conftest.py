"""Shared fixtures for the data tests: the real-format table fixtures and tiny synthetic images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def write_lesion(folder: Path, image_id: str, size: tuple[int, int] = (48, 64),
                 centre: tuple[int, int] = (20, 16), radius: int = 8) -> tuple[Path, Path]:
    """A skin-coloured JPEG with a dark disc and its 0/255 PNG mask; returns both paths."""
    height, width = size
    image = np.full((height, width, 3), (200, 160, 140), dtype=np.uint8)  # RGB skin tone
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.circle(image, centre, radius, (60, 30, 20), thickness=-1)
    cv2.circle(mask, centre, radius, 255, thickness=-1)
    folder.mkdir(parents=True, exist_ok=True)
    image_path, mask_path = folder / f"{image_id}.png", folder / f"{image_id}_mask.png"
    # PNG for the image too: lossless, so tests can compare exact pixels.
    cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(mask_path), mask)
    return image_path, mask_path


@pytest.fixture
def lesion_writer():
    """``write_lesion`` as a fixture, so test modules need not import conftest."""
    return write_lesion
