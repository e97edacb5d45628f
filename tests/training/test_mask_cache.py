"""The predicted-mask cache: filled once, kept while the segmenter checkpoint is the same, cleared when not."""

from __future__ import annotations

import contextlib
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import training.masks as masks
from training.config import load_config


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A config, a 3-image index and a fake segmenter whose masks are all 0.5."""
    config = load_config(None, [f"out_dir={tmp_path / 'run'}", "data.input_size=32"])
    checkpoint = masks.segmenter_checkpoint(config)
    checkpoint.parent.mkdir(parents=True)
    torch.save({"weights": "v1"}, checkpoint)
    images = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), np.full((40, 50, 3), 100 + i, np.uint8))
        images.append({"image_id": f"img{i}", "image_path": str(path)})
    calls = []

    @contextlib.contextmanager
    def predictor(ckpt, size, device, batch_size):
        def predict(batch):
            calls.append(len(batch))
            return np.full((len(batch), 32, 32), 0.5, np.float32)
        yield predict, batch_size

    monkeypatch.setattr(masks, "mask_predictor", predictor)
    return config, pd.DataFrame(images), checkpoint, calls


def test_onnxruntime_masks_match_pytorch(tmp_path):
    """The cache predicts through ONNX Runtime on a CPU: the same probabilities as PyTorch."""
    import torch

    from training.inference import predict_mask_probabilities
    from training.models.segmenter import SegmenterConfig, create_segmenter

    torch.manual_seed(0)
    model = create_segmenter(SegmenterConfig(encoder="tu-test_efficientnet", weights=None,
                                             decoder_channels=[16, 16, 16, 16, 16])).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    mean, std = [0.5] * 3, [0.25] * 3
    expected = predict_mask_probabilities(model, images, mean, std, torch.device("cpu"))
    with masks.onnxruntime_predictor(model, 64, mean, std) as predict:
        got = predict(images)
    assert got.shape == (3, 64, 64) and np.abs(got - expected).max() < 1e-4


def test_masks_are_predicted_once_and_reused(setup):
    config, index, _, calls = setup
    cache = masks.cache_masks(config, index)
    assert sorted(p.name for p in cache.glob("*.png")) == ["img0.png", "img1.png", "img2.png"]
    assert calls == [3]
    source_mtime = (cache / "source.json").stat().st_mtime_ns
    masks.cache_masks(config, index)
    assert calls == [3]  # nothing predicted again
    # Not rewritten either: under torchrun every rank runs this after rank 0 filled the cache.
    assert (cache / "source.json").stat().st_mtime_ns == source_mtime


def test_a_new_segmenter_checkpoint_clears_the_cache(setup, capsys):
    config, index, checkpoint, calls = setup
    cache = masks.cache_masks(config, index)
    torch.save({"weights": "v2"}, checkpoint)
    masks.cache_masks(config, index)
    assert calls == [3, 3]
    assert "made by another segmenter checkpoint, input size or preprocessing: clearing its 3 masks" in capsys.readouterr().out
    assert json.loads((cache / "source.json").read_text())["sha256"] == masks.sha256_file(checkpoint)


@pytest.mark.parametrize("damage", ["missing", "torn"])
def test_masks_of_unknown_origin_are_not_trusted(setup, damage, capsys):
    config, index, _, calls = setup
    cache = masks.cache_masks(config, index)
    if damage == "missing":
        (cache / "source.json").unlink()
    else:
        (cache / "source.json").write_text('{"segmenter_checkpoint": ')
    masks.cache_masks(config, index)
    assert calls == [3, 3]
    assert "made by an unknown segmenter checkpoint: clearing its 3 masks" in capsys.readouterr().out


def test_masks_of_another_input_size_are_predicted_again(setup, capsys):
    config, index, _, calls = setup
    masks.cache_masks(config, index)
    masks.cache_masks(load_config(None, [f"out_dir={config.out_dir}", "data.input_size=48"]), index)
    assert calls == [3, 3]
    assert "clearing its 3 masks" in capsys.readouterr().out
    assert json.loads((config.out / "masks" / "source.json").read_text())["input_size"] == 48


def test_a_cache_from_before_sizes_were_recorded_is_kept_when_its_masks_fit(setup):
    config, index, _, calls = setup
    cache = masks.cache_masks(config, index)
    record = json.loads((cache / "source.json").read_text())
    del record["input_size"]  # as written before this was recorded
    (cache / "source.json").write_text(json.dumps(record))
    masks.cache_masks(config, index)
    assert calls == [3]  # its 32-pixel masks are this config's size: nothing predicted again
    assert json.loads((cache / "source.json").read_text())["input_size"] == 32


def test_a_segmenter_trained_on_other_pixels_predicts_no_masks(setup):
    config, index, checkpoint, calls = setup
    torch.save({"pixels": {"input_size": 32, "preprocessing": [{"name": "shades_of_gray"}]}}, checkpoint)
    with pytest.raises(SystemExit, match=r"the segmenter .* was trained with preprocessing \[\{'name': 'shades_of_gray'\}\]"):
        masks.cache_masks(config, index)
    assert calls == []
