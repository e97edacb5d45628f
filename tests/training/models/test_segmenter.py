"""The U-Net segmenter: shapes, encoder names, weight sources and ONNX parity."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch

from training.models.segmenter import SegmenterConfig, create_segmenter
from training.models.weights import IMAGENET_MEAN, WeightsMismatch, WeightsUnavailable

TINY = dict(encoder="tu-test_efficientnet", decoder_channels=(16, 16, 16, 16, 16))


def _tiny(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_segmenter(SegmenterConfig(**{**TINY, **overrides})).eval()


def test_tiny_segmenter_gives_one_channel_of_unbounded_logits():
    with torch.no_grad():
        logits = _tiny()(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert logits.shape == (2, 1, 64, 64)
    # Logits, not probabilities: the loss and the export apply the sigmoid.
    assert logits.min() < 0 or logits.max() > 1


def test_segmenter_carries_its_normalisation():
    assert _tiny().normalisation == (IMAGENET_MEAN, (0.229, 0.224, 0.225))


def test_smp_encoder_by_its_own_name():
    model = create_segmenter(SegmenterConfig(encoder="resnet18", decoder_channels=(8, 8, 8, 8, 8)))
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_unknown_smp_encoder_suggests_names_and_the_timm_route():
    with pytest.raises(ValueError) as err:
        create_segmenter(SegmenterConfig(encoder="resnet43"))
    message = str(err.value)
    assert message.startswith("smp has no encoder named 'resnet43'; did you mean resnet34")
    assert message.endswith("any timm backbone works as 'tu-<timm name>'")


def test_unknown_timm_encoder_is_reported_by_its_timm_name():
    with pytest.raises(ValueError, match="timm has no backbone named 'test_efficientnett'"):
        create_segmenter(SegmenterConfig(encoder="tu-test_efficientnett"))


def test_local_checkpoint_goes_into_the_timm_encoder_inside_smp(tmp_path):
    torch.manual_seed(3)
    classifier = timm.create_model("test_efficientnet")
    torch.save(classifier.state_dict(), tmp_path / "backbone.pth")

    model = _tiny(weights=str(tmp_path / "backbone.pth"))

    encoder = model.encoder.model
    torch.testing.assert_close(encoder.conv_stem.weight, classifier.conv_stem.weight)
    torch.testing.assert_close(encoder.blocks[-1][-1].bn2.running_var, classifier.blocks[-1][-1].bn2.running_var)


def test_lite0_package_goes_into_a_lite0_encoder():
    model = _tiny(encoder="tu-tf_efficientnet_lite0", weights="package:efficientnet_lite0")
    assert model.normalisation == ((0.5,) * 3, (0.5,) * 3)
    # ImageNet BatchNorm statistics, not the fresh 0 / 1.
    assert model.encoder.model.bn1.running_mean.abs().max() > 0.1


def test_package_for_another_encoder_is_refused():
    with pytest.raises(WeightsMismatch, match="holds weights for tf_efficientnet_lite0, not for resnet18"):
        create_segmenter(SegmenterConfig(encoder="resnet18", weights="package:efficientnet_lite0"))


@pytest.mark.parametrize("encoder", ["resnet18", "tu-test_efficientnet"])
def test_hub_offline_is_unavailable_naming_the_alternatives(offline_hub, encoder):
    with pytest.raises(WeightsUnavailable) as err:
        create_segmenter(SegmenterConfig(encoder=encoder, weights="hub"))
    assert str(err.value).startswith(f"pretrained weights for {encoder!r} could not be downloaded")
    assert "a local checkpoint path" in str(err.value)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_matches_pytorch(tmp_path):
    model = _tiny()
    path = tmp_path / "segmenter.onnx"
    torch.onnx.export(model, (torch.zeros(2, 3, 64, 64),), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    image = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"image": image.numpy()})
    with torch.no_grad():
        torch_logits = model(image).numpy()

    assert onnx_logits.shape == (3, 1, 64, 64)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4, rtol=0)
