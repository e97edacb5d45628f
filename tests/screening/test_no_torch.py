"""The screening runtime imports and screens a folder without torch, timm or smp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# In a fresh interpreter: make the training stack unimportable (as on a runtime-only install),
# import every screening module, screen a folder through the CLI, and report what got loaded.
SCRIPT = """
import importlib, importlib.abc, json, pkgutil, sys

FORBIDDEN = ("torch", "torchvision", "timm", "segmentation_models_pytorch")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{name} is not installed (blocked by test_no_torch)")
        return None

sys.meta_path.insert(0, Block())
import screening
modules = sorted(m.name for m in pkgutil.walk_packages(screening.__path__, "screening."))
for name in modules:
    if name != "screening.__main__":
        importlib.import_module(name)

from screening.cli import main
sys.argv = ["screen", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print(json.dumps({"modules": modules, "exit": code, "loaded": loaded}))
"""


def test_screening_never_imports_the_training_stack(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    args = ["folder", str(images), "--meta", str(meta), "--out", str(out), "--bundle", str(tiny_bundle),
            "--backend", "auto", "--quiet"]
    result = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert report["exit"] == 0
    assert {"screening.pipeline", "screening.session", "screening.images", "screening.image_header",
            "screening.cli.folder", "screening.backends.onnxrt", "screening.journal", "screening.results",
            "screening.progress"} <= set(report["modules"])
    assert len(out.read_text(encoding="utf-8-sig").splitlines()) == 4
