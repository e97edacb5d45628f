"""`torchrun --nproc_per_node=N -m training classifier`: the DistributedDataParallel path, on CPUs (gloo).

The README promises multi-GPU training through torchrun; no GPU is needed to check that two ranks
split the epoch, pass the warm-up's frozen backbones (parameters that get no gradient for a whole
epoch) and the unfreezing after it, and leave one checkpoint that loads.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ..conftest import REPO, SAMPLE_DATA, tiny_overrides


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed")
def test_two_ranks_train_through_the_warm_up_and_leave_one_checkpoint(tmp_path):
    assert subprocess.run([sys.executable, "-m", "training", "prepare", "--source", str(SAMPLE_DATA / "labels.csv"),
                           "--classes", str(REPO / "configs" / "classes" / "sample4.yaml"),
                           "--out", str(tmp_path / "index.csv")], cwd=REPO, capture_output=True).returncode == 0
    settings = [arg for item in tiny_overrides(tmp_path) for arg in ("--set", item)]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "training", "classifier", *settings,
                           "--set", "classifier.masks=ground_truth", "--set", "classifier.optim.epochs=2",
                           "--set", "classifier.optim.freeze_epochs=1", "--set", "device=cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "backbones frozen" in output and "fine-tuning every backbone" in output
    assert output.count("best classifier checkpoint:") == 2  # both ranks finished
    state = torch.load(tmp_path / "classifier" / "best.pt", map_location="cpu", weights_only=False)
    assert not any(key.startswith("module.") for key in state["model"])  # saved unwrapped: loads anywhere
