"""bench/gpu_training_smoke.py: without a GPU the check must say FAIL, never PASS by skipping."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the verdict where no GPU is")
def test_without_a_gpu_the_training_check_fails_and_says_why(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_training_smoke.py"), "--out", str(tmp_path / "out"),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL versions" in done.stdout and "no CUDA GPU visible" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("VERDICT: FAIL - versions")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["pipeline"] == {"skipped": "after versions failed"}
    assert "error" in summary["step_speed"]  # no GPU to time on either
