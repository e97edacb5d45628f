"""`screen evaluate` and `screen calibrate` run on a runtime-only install: torch is never imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# In a fresh interpreter: make the training stack unimportable, run one CLI command, report
# whether it succeeded and what of the training stack got loaded.
SCRIPT = """
import importlib.abc, json, sys

FORBIDDEN = ("torch", "torchvision", "timm", "segmentation_models_pytorch", "sklearn", "training")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{name} is not installed (blocked by test_no_torch_validation)")
        return None

sys.meta_path.insert(0, Block())
from screening.cli import main
sys.argv = ["screen", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print(json.dumps({"exit": code, "loaded": loaded}))
"""


def screen_without_torch(*args: object) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_evaluate_and_calibrate_without_torch_or_scikit_learn(synthetic, tmp_path):
    data = synthetic(n=200)
    evaluated = screen_without_torch("evaluate", data.results, "--labels", data.labels, "--bundle",
                                     data.manifest_dir, "--out", tmp_path / "eval", "--bootstrap", 50, "--quiet")
    assert evaluated == {"exit": 0, "loaded": []}
    assert (tmp_path / "eval" / "roc.png").is_file()
    calibrated = screen_without_torch("calibrate", "--bundle", data.manifest_dir, "--results", data.results,
                                      "--labels", data.labels, "--out", tmp_path / "derived", "--bootstrap", 50,
                                      "--quiet")
    assert calibrated == {"exit": 0, "loaded": []}
    assert (tmp_path / "derived" / "manifest.json").is_file()
