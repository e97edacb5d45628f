"""Tests for bench/decode.py: both decode paths, their timing fields and pixel differences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import decode
from bundle_factory import write_image

REPO = Path(__file__).resolve().parents[2]
FULLRES = REPO.parent / "shared" / "data" / "isic_fullres" / "images"


def smooth_rgb(height: int, width: int) -> np.ndarray:
    """A smooth colour gradient with a soft dark blob: what a reduced decode reproduces well."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    blob = np.exp(-(((x - width / 2) / (width / 5)) ** 2 + ((y - height / 2) / (height / 5)) ** 2))
    rgb = np.stack([200 - 120 * blob, 150 - 90 * blob + 20 * y / height, 130 - 80 * blob + 20 * x / width], -1)
    return rgb.clip(0, 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    write_image(folder / "wide.jpg", smooth_rgb(1200, 1600))
    write_image(folder / "small.jpg", smooth_rgb(200, 300))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_both_paths_per_image_with_differences(images: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.json"
    assert decode.main(["--images", str(images), "--size", "224", "--repeats", "2", "--min-width", "1500",
                        "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| small.jpg |   300x200 |    1/1 |" in text
    report = json.loads(out.read_text())
    results = {entry["image"]: entry for entry in report["results"]}
    assert sorted(results) == ["small.jpg", "wide.jpg"]  # notes.txt is no image
    wide, small = results["wide.jpg"], results["small.jpg"]
    # 1200 / 8 < 224 <= 1200 / 4: the decoder reduces by 4, and the result stays close.
    assert (wide["width"], wide["height"], wide["reduction"]) == (1600, 1200, 4)
    assert wide["max_abs_diff"] <= 8 and wide["mean_abs_diff"] < 1.0
    # Too small to reduce: both paths are the same decode, pixel for pixel.
    assert small["reduction"] == 1 and small["max_abs_diff"] == 0
    for entry in (wide, small):
        assert len(entry["full_ms_runs"]) == 2 and entry["full_ms"] > 0 and entry["reduced_ms"] > 0
        assert entry["speedup"] == pytest.approx(entry["full_ms"] / entry["reduced_ms"])
    summary = report["summary"]
    assert (summary["images"], summary["wide_images"]) == (2, 1)
    assert summary["speedup_geomean_wide"] == pytest.approx(wide["speedup"])
    assert summary["max_abs_diff"] == wide["max_abs_diff"]


def test_a_folder_without_images_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(decode.BenchError, match=r"^no images in "):
        decode.main(["--images", str(tmp_path), "--out", str(tmp_path / "r.json")])


@pytest.mark.data
@pytest.mark.skipif(not FULLRES.is_dir(), reason="../shared/data/isic_fullres is not available")
def test_full_resolution_images_decode_reduced_and_close(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert decode.main(["--images", str(FULLRES), "--repeats", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert len(results) == 12
    for entry in results:
        # Every one of them is at least 722 px wide: always at least a 1/2 decode for 224 px.
        assert entry["reduction"] >= 2
        if entry["width"] >= 1500:
            assert entry["reduction"] >= 4
        assert entry["mean_abs_diff"] < 3.0
