"""Fixtures for the bench script tests: a tiny ONNX bundle and a tiny labelled data set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The bench scripts import their shared module (bench/harness.py) by plain name, as they do when
# run as `python bench/NAME.py`.
sys.path.insert(0, str(REPO / "bench"))

from bundle_factory import build_bundle, lesion_rgb, write_image  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid bundle (32x32 input, 4 classes) from the screening tests' factory."""
    bundle = tmp_path_factory.mktemp("engines") / "tiny"
    build_bundle(bundle)
    return bundle


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data set laid out like ../shared/data/<set>: images/ and labels.csv (file, age, sex, site)."""
    folder = tmp_path_factory.mktemp("dataset")
    lines = ["image_id,file,diagnosis,age,sex,site"]
    for index in range(5):
        write_image(folder / "images" / f"L{index}.jpg", lesion_rgb(index))
        lines.append(f"L{index},images/L{index}.jpg,nevus,{30 + 5 * index},{'female' if index % 2 else 'male'},back")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
