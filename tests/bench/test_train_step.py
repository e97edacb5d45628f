"""Tests for bench/train_step.py: seconds per training step, one process per variant."""

from __future__ import annotations

import re

import train_step

TINY = """
data: {input_size: 64, classes: ham7}
classifier:
  model: {image_backbone: test_efficientnet, mask_backbone: mobilenetv3_small_050, image_weights: null,
          mask_weights: null, d_model: 32, heads: 4}
  optim: {batch_size: 4}
"""


def test_each_variant_reports_its_seconds_per_step(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    assert train_step.main(["--config", str(config), "--variants", "nchw", "nhwc", "nhwc-bf16", "--steps", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["nchw", "nhwc", "nhwc-bf16"]
    for line in lines:
        assert re.search(r": \d+\.\d\d s/step \(batch 4, 64 px, \d+ threads; warm-up \d+ s\)$", line), line


def test_one_variant_is_measured_in_this_process_with_the_batch_asked_for(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    result = train_step.measure(str(config), "nhwc", steps=1, batch=2)
    assert result["batch"] == 2 and result["input_size"] == 64 and result["s_per_step"] > 0


def test_a_relative_config_works_from_another_folder_and_a_failure_exits_1(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "broken.yaml").write_text(TINY.replace("test_efficientnet", "no_such_backbone"))
    monkeypatch.chdir(tmp_path)
    assert train_step.main(["--config", "tiny.yaml", "--variants", "nhwc", "--steps", "1"]) == 0
    assert train_step.main(["--config", "broken.yaml", "--variants", "nhwc", "--steps", "1"]) == 1
    assert "nhwc: failed: " in capsys.readouterr().out
