"""ONNX export of the fusion classifier: three named inputs in every variant, parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from screening.metadata import DEFAULT_VOCABULARY
from training.models.fusion import FusionClassifier, FusionConfig

INPUTS = ["image", "mask", "meta"]
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


def _export(model: torch.nn.Module, path: Path) -> ort.InferenceSession:
    example = (torch.zeros(2, 3, 64, 64), torch.zeros(2, 1, 64, 64), torch.zeros(2, DEFAULT_VOCABULARY.dim))
    torch.onnx.export(model, example, str(path), dynamo=False, opset_version=17,
                      input_names=INPUTS, output_names=["logits"],
                      dynamic_axes={name: {0: "N"} for name in [*INPUTS, "logits"]})
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _batch(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    meta = np.stack([DEFAULT_VOCABULARY.encode(age, sex, site)[0]
                     for age, sex, site in [(35, "f", "back"), (None, "male", "palm"), (82, "", "face")][:n]])
    return {"image": rng.standard_normal((n, 3, 64, 64), dtype=np.float32),
            "mask": rng.uniform(0, 1, (n, 1, 64, 64)).astype(np.float32),
            "meta": meta.astype(np.float32)}


@pytest.mark.parametrize("variant", [
    dict(),  # the paper's model: cross-attention with metadata and mask
    dict(mask_input_mode="masked_image"),
    dict(use_meta=False),
    dict(use_meta=False, use_mask=False),
    dict(fusion="concat", use_mask=False),
    # a light mask branch trained from scratch: MobileNetV3's pooled output is its 1x1 head's width
    dict(mask_backbone="mobilenetv3_small_050"),
], ids=["cross_attention", "masked_image", "no_meta", "image_only", "concat_no_mask", "light_mask_branch"])
def test_export_keeps_three_inputs_and_matches_pytorch(tmp_path, variant):
    torch.manual_seed(0)
    cfg = FusionConfig(image_backbone="test_efficientnet", d_model=32, heads=4, **variant)
    model = FusionClassifier(cfg, DEFAULT_VOCABULARY.dim, num_classes=5).eval()

    session = _export(model, tmp_path / "classifier.onnx")
    feed = _batch(3)  # a batch size other than the exported example's: the batch axis is dynamic
    (onnx_logits,) = session.run(["logits"], feed)
    with torch.no_grad():
        torch_logits = model(*(torch.from_numpy(feed[name]) for name in INPUTS)).numpy()

    assert [i.name for i in session.get_inputs()] == INPUTS
    assert [i.shape for i in session.get_inputs()] == [["N", 3, 64, 64], ["N", 1, 64, 64], ["N", DEFAULT_VOCABULARY.dim]]
    assert onnx_logits.shape == (3, 5)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4, rtol=0)
