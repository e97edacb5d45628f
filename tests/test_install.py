"""`pip install .` (not editable) gives a `screen` that finds the starter bundle without a checkout."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STARTER = REPO / "engines" / "starter"


@pytest.mark.slow
@pytest.mark.skipif(not (STARTER / "manifest.json").is_file(), reason="engines/starter is absent")
def test_an_installed_wheel_screens_with_its_own_starter_bundle(tmp_path: Path) -> None:
    # The wheel as `pip install .` builds it (no build isolation: no download needed here).
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(REPO)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("lesion_screening-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"screening/bundled/starter/{name}" for name in ("manifest.json", "segmenter.onnx",
                                                              "classifier.onnx")} <= names
    assert not any("/trt/" in name for name in names)  # per-GPU engines never ship
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    # A clinic's folder, far from any checkout; no $SCREEN_BUNDLE, no --bundle.
    images = tmp_path / "clinic" / "images"
    images.mkdir(parents=True)
    for name in sorted(os.listdir(REPO / "sample_data" / "images"))[:2]:
        shutil.copy(REPO / "sample_data" / "images" / name, images / name)
    (tmp_path / "clinic" / "patients.csv").write_text("image\n" + "".join(f"{n}\n" for n in sorted(os.listdir(images))))
    env = {k: v for k, v in os.environ.items() if k != "SCREEN_BUNDLE"}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run([sys.executable, "-m", "screening", "folder", "images", "--meta", "patients.csv",
                           "--out", "results.csv", "--backend", "onnxruntime", "--quiet"],
                          cwd=tmp_path / "clinic", env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "clinic" / "results.csv").open(encoding="utf-8-sig")))
    assert len(rows) == 2 and all(row["bundle"].startswith("starter@") for row in rows)
