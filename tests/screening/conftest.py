"""Shared fixtures for the screening tests: a tiny ONNX bundle and tiny synthetic image folders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

# pytest's importlib import mode does not put test folders on sys.path; the test modules here
# import their helper module (bundle_factory.py, beside this file) by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundle_factory import build_bundle, lesion_rgb, patient_row, write_image, write_patients  # noqa: E402
from stalled_share import Share  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid bundle (manifest + two ONNX models, 32x32 input, 4 classes), built once."""
    bundle = tmp_path_factory.mktemp("engines") / "tiny"
    build_bundle(bundle)
    return bundle


@pytest.fixture
def no_default_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$SCREEN_BUNDLE names a missing folder: a test never picks up a bundle from the repository or
    the environment by accident. Modules that run `screen` ask for it with
    ``pytestmark = pytest.mark.usefixtures("no_default_bundle")``."""
    monkeypatch.setenv("SCREEN_BUNDLE", str(tmp_path / "no-such-bundle"))


@pytest.fixture
def make_folder(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """Build an images folder of ``n`` lesion PNG/JPEGs and a patients.csv with a row for each.

    Returns a function ``(n, name="images", start=0) -> (images_dir, patients_csv)``; calling
    it again with a larger ``n`` adds images (and rows) to the same folder.
    """
    def make(n: int, name: str = "images", start: int = 0) -> tuple[Path, Path]:
        folder = tmp_path / name
        rows = []
        for index in range(n):
            rel = f"img_{index:03d}.{'png' if index % 3 else 'jpg'}"
            if index >= start:
                write_image(folder / rel, lesion_rgb(index))
            rows.append(patient_row(index, rel))
        return folder, write_patients(tmp_path / f"{name}_patients.csv", rows)

    return make


@pytest.fixture
def share(monkeypatch: pytest.MonkeyPatch) -> Iterator[Share]:
    """A network share the stalled-drive tests stall (stalled_share.Share); whatever a test left
    stuck answers when it ends."""
    stalled = Share(monkeypatch)
    yield stalled
    stalled.answer()
