"""The fusion classifier's attention maps: distributions over image positions that follow the queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from screening.attention import ATTENTION_OUTPUT
from screening.metadata import DEFAULT_VOCABULARY
from training.export import classifier_for_export, export_onnx
from training.models.fusion import FusionClassifier, FusionConfig

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]
SIZE = 96  # test_efficientnet gives a 3 x 3 feature map: 9 image positions


def _model(**variant) -> FusionClassifier:
    torch.manual_seed(0)
    cfg = FusionConfig(image_backbone="test_efficientnet", d_model=32, heads=4, **variant)
    return FusionClassifier(cfg, DEFAULT_VOCABULARY.dim, num_classes=5).eval()


def _inputs(n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 3, SIZE, SIZE, generator=generator)
    mask = torch.zeros(n, 1, SIZE, SIZE)
    mask[:, :, 20:60, 30:80] = 0.9  # a lesion off-centre
    meta = torch.from_numpy(np.stack([DEFAULT_VOCABULARY.encode(70, "male", "back")[0]] * n)).float()
    return image, mask, meta


def test_attention_is_a_distribution_over_image_positions_per_query():
    model = _model()
    with torch.no_grad():
        logits, attention = model.forward_with_attention(*_inputs())
    assert model.attention_queries == ["meta", "mask"]
    n, queries, h, w = attention.shape
    assert (n, queries) == (2, 2) and h * w > 1
    assert torch.all(attention >= 0)
    torch.testing.assert_close(attention.sum(dim=(2, 3)), torch.ones(2, 2), atol=1e-5, rtol=0)


def test_asking_for_the_maps_does_not_change_the_logits():
    model = _model()
    inputs = _inputs()
    with torch.no_grad():
        logits, _ = model.forward_with_attention(*inputs)
        torch.testing.assert_close(logits, model(*inputs), atol=1e-5, rtol=0)


def test_metadata_query_map_changes_with_the_metadata_only():
    model = _model()
    image, mask, meta = _inputs()
    other_meta = torch.from_numpy(np.stack([DEFAULT_VOCABULARY.encode(15, "female", "palm")[0]] * 2)).float()
    with torch.no_grad():
        _, before = model.forward_with_attention(image, mask, meta)
        _, after = model.forward_with_attention(image, mask, other_meta)
    assert (before[:, 0] - after[:, 0]).abs().max() > 1e-4  # the metadata query looked elsewhere
    torch.testing.assert_close(before[:, 1], after[:, 1])  # the mask query did not move


def test_mask_query_map_changes_with_the_mask_only():
    model = _model()
    image, mask, meta = _inputs()
    other_mask = torch.zeros_like(mask)
    other_mask[:, :, 50:90, 0:40] = 0.9
    with torch.no_grad():
        _, before = model.forward_with_attention(image, mask, meta)
        _, after = model.forward_with_attention(image, other_mask, meta)
    assert (before[:, 1] - after[:, 1]).abs().max() > 1e-4
    torch.testing.assert_close(before[:, 0], after[:, 0])


@pytest.mark.parametrize("variant, queries", [
    (dict(), ["meta", "mask"]),
    (dict(use_mask=False), ["meta"]),
    (dict(use_meta=False), ["mask"]),
], ids=["both_queries", "meta_only", "mask_only"])
def test_export_gives_attention_as_a_second_output_matching_pytorch(tmp_path: Path, variant, queries):
    model = _model(**variant)
    exported, outputs = classifier_for_export(model)
    assert outputs == ["logits", ATTENTION_OUTPUT]
    example = dict(zip(("image", "mask", "meta"), _inputs(2)))
    export_onnx(exported, example, outputs, tmp_path / "classifier.onnx", opset=17)
    session = ort.InferenceSession(str(tmp_path / "classifier.onnx"), providers=["CPUExecutionProvider"])
    feed = {name: tensor.numpy() for name, tensor in zip(("image", "mask", "meta"), _inputs(3, seed=1))}
    logits, attention = session.run(["logits", ATTENTION_OUTPUT], feed)  # batch 3: the axis is dynamic
    with torch.no_grad():
        torch_logits, torch_attention = model.forward_with_attention(*(torch.from_numpy(v) for v in feed.values()))
    assert attention.shape[:2] == (3, len(queries))
    np.testing.assert_allclose(attention, torch_attention.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits, torch_logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(attention.sum(axis=(2, 3)), 1.0, atol=1e-5)


@pytest.mark.parametrize("variant", [dict(fusion="concat"), dict(use_meta=False, use_mask=False)],
                         ids=["concat", "image_only"])
def test_models_without_cross_attention_export_logits_only(variant):
    model = _model(**variant)
    assert model.attention_queries == []
    assert classifier_for_export(model) == (model, ["logits"])
    with pytest.raises(ValueError, match="no cross-attention"):
        model.forward_with_attention(*_inputs())
