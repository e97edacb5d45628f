"""Creating timm backbones by name with a weights spec."""

from __future__ import annotations

import pytest
import torch

from training.models.backbones import create_backbone


def test_unknown_name_suggests_close_timm_names():
    with pytest.raises(ValueError) as err:
        create_backbone("efficientnet_b33", None)
    assert str(err.value).startswith("timm has no backbone named 'efficientnet_b33'; did you mean efficientnet_b3,")


def test_hopeless_name_points_to_the_list():
    with pytest.raises(ValueError) as err:
        create_backbone("zzzz", "none")
    assert str(err.value) == "timm has no backbone named 'zzzz'; see timm.list_models()"


def test_timm_options_reach_the_model_and_random_init_needs_no_file():
    backbone = create_backbone("test_efficientnet", "none", num_classes=0, global_pool="", in_chans=1)
    features = backbone.forward_features(torch.zeros(2, 1, 64, 64))
    assert features.shape == (2, backbone.num_features, 2, 2)


def test_checkpoint_stem_is_adapted_to_three_to_one_channels(tmp_path):
    torch.manual_seed(0)
    rgb = create_backbone("test_efficientnet", None)
    torch.save(rgb.state_dict(), tmp_path / "rgb.pth")
    one_channel = create_backbone("test_efficientnet", str(tmp_path / "rgb.pth"), in_chans=1)
    torch.testing.assert_close(one_channel.conv_stem.weight, rgb.conv_stem.weight.sum(1, keepdim=True))
