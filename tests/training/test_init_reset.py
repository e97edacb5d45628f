"""Starting a stage from another stage's weights with one branch swapped: the light mask branch.

A fine-tuning stage may replace the mask branch (a frozen ImageNet Lite0, as expensive as the
image branch) with a small one trained from scratch. Everything else must come from the earlier
stage, strictly; the new branch learns at the head's rate, not the pretrained backbones'.
"""

from __future__ import annotations

import pytest
import torch

from screening.metadata import DEFAULT_VOCABULARY
from training.config import load_config
from training.loop import make_optimizer
from training.models.fusion import FusionClassifier, FusionConfig, backbone_parameters
from training.train_classifier import load_initial_weights

LIGHT = "mobilenetv3_small_050"


def _model(seed: int, **overrides) -> FusionClassifier:
    torch.manual_seed(seed)
    cfg = FusionConfig(**{"image_backbone": "test_efficientnet", "d_model": 32, "heads": 4, **overrides})
    return FusionClassifier(cfg, DEFAULT_VOCABULARY.dim, num_classes=4)


def test_a_light_mask_branch_starts_fresh_and_everything_else_comes_from_the_earlier_stage():
    earlier = _model(0).state_dict()
    model = _model(1, mask_backbone=LIGHT)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    load_initial_weights(model, earlier, ["mask_backbone", "mask_proj"])
    for key, value in model.state_dict().items():
        if key.startswith(("mask_backbone.", "mask_proj.")):
            assert torch.equal(value, fresh[key]), key  # left as initialised
        else:
            assert torch.equal(value, earlier[key]), key  # image branch, attention, metadata, head
    assert model.mask_proj[0].normalized_shape == (1024,)  # MobileNetV3's head width, not num_features


def test_weights_that_do_not_fit_outside_the_reset_stop_the_run_with_their_names():
    earlier = _model(0).state_dict()
    with pytest.raises(ValueError, match=r"does not fit this model outside classifier.init_reset \(.*"
                                         r"mask_backbone \(\d+ tensors\).*: reset those parts"):
        load_initial_weights(_model(1, mask_backbone=LIGHT), earlier, [])
    with pytest.raises(ValueError, match=r"of another shape: mask_proj \(3 tensors\)\)"):
        load_initial_weights(_model(1, mask_backbone=LIGHT), earlier, ["mask_backbone"])
    with pytest.raises(ValueError, match=r"not in the checkpoint: attention \(4 tensors\), meta_mlp \(\d+ tensors\); "
                                         r"of another shape: head \(1 tensor\)"):
        load_initial_weights(_model(1), _model(0, use_meta=False).state_dict(), [])
    with pytest.raises(ValueError, match=r"not in this model: attention \(4 tensors\), meta_mlp"):
        load_initial_weights(_model(1, use_meta=False), earlier, [])
    with pytest.raises(ValueError, match=r"init_reset names no part of the model: mask_backbon \(parts: .*head"):
        load_initial_weights(_model(1, mask_backbone=LIGHT), earlier, ["mask_backbon", "mask_proj"])


def test_only_pretrained_backbones_get_the_lower_backbone_learning_rate():
    model = _model(0, mask_backbone=LIGHT)
    # As a config with ImageNet weights for the image branch only says (not loaded: a tiny backbone).
    model.cfg.image_weights, model.cfg.mask_weights = "package:efficientnet_lite0", None
    assert model.pretrained_branches() == ["image"]
    optim = load_config(None, []).classifier.optim
    optim.lr, optim.backbone_lr = 3e-4, 1.5e-4
    optimizer = make_optimizer(model, optim, backbone_parameters(model, pretrained_only=True))
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert {rate[id(p)] for p in model.image_backbone.parameters()} == {1.5e-4}
    assert {rate[id(p)] for p in model.mask_backbone.parameters()} == {3e-4}  # from scratch: the head's rate
    assert rate[id(model.head[0].weight)] == 3e-4


def test_the_warm_up_freezes_only_pretrained_backbones_a_fresh_branch_learns_from_the_start():
    from training.train_classifier import set_epoch_freezing

    model = _model(0, mask_backbone=LIGHT)
    model.cfg.image_weights, model.cfg.mask_weights = "package:efficientnet_lite0", None
    trainable = lambda backbone: {p.requires_grad for p in backbone.parameters()}  # noqa: E731
    assert set_epoch_freezing(model, 0, 1, freeze_mask_backbone=False)  # the warm-up epoch
    assert trainable(model.image_backbone) == {False} and trainable(model.mask_backbone) == {True}
    assert not set_epoch_freezing(model, 1, 1, freeze_mask_backbone=False)
    assert trainable(model.image_backbone) == {True} and trainable(model.mask_backbone) == {True}
    # The shipped recipe: both branches pretrained, the mask one frozen throughout.
    both = _model(0)
    both.cfg.image_weights = both.cfg.mask_weights = "package:efficientnet_lite0"
    set_epoch_freezing(both, 0, 1, freeze_mask_backbone=True)
    assert trainable(both.image_backbone) == {False} and trainable(both.mask_backbone) == {False}
    set_epoch_freezing(both, 1, 1, freeze_mask_backbone=True)
    assert trainable(both.image_backbone) == {True} and trainable(both.mask_backbone) == {False}


def _stage(tmp_path, *overrides):
    from ..conftest import tiny_overrides
    return load_config(None, tiny_overrides(tmp_path) + list(overrides))


def test_a_fresh_mask_branch_kept_frozen_is_refused_before_anything_runs(tmp_path):
    from training.train_classifier import check_stage, train

    light = ["classifier.model.mask_backbone=" + LIGHT, "classifier.model.mask_weights=null",
             f"classifier.init_from={tmp_path / 'earlier' / 'last.pt'}",
             "classifier.init_reset=[mask_backbone, mask_proj]", "classifier.stage_dir=light"]
    with pytest.raises(SystemExit, match="freeze_mask_backbone would keep a mask branch without pretrained "
                                         "weights at its random initialisation: set freeze_mask_backbone: false"):
        train(_stage(tmp_path, *light, "classifier.freeze_mask_backbone=true"))
    assert not (tmp_path / "light").exists()  # no run files, no mask cache
    check_stage(_stage(tmp_path, *light, "classifier.freeze_mask_backbone=false"))
    # An earlier stage's trained mask branch, carried over rather than reset, may stay frozen.
    check_stage(_stage(tmp_path, *light[:3], "classifier.freeze_mask_backbone=true"))


def test_a_random_image_stem_kept_frozen_is_refused_before_anything_runs(tmp_path):
    from training.train_classifier import check_stage

    frozen = "classifier.frozen_image_blocks=2"  # the tiny config's image backbone has no pretrained weights
    with pytest.raises(SystemExit, match="frozen_image_blocks would keep the image backbone's stem at its random "
                                         "initialisation"):
        check_stage(_stage(tmp_path, frozen))
    earlier = f"classifier.init_from={tmp_path / 'earlier' / 'last.pt'}"
    check_stage(_stage(tmp_path, frozen, earlier))  # an earlier stage's trained stem may stay frozen
    with pytest.raises(SystemExit, match="random initialisation"):
        check_stage(_stage(tmp_path, frozen, earlier, "classifier.init_reset=[image_backbone]"))


def test_init_reset_without_init_from_or_with_a_typo_is_refused(tmp_path):
    from training.train_classifier import check_stage

    with pytest.raises(SystemExit, match="init_reset only applies with classifier.init_from"):
        check_stage(_stage(tmp_path, "classifier.init_reset=[mask_proj]"))
    with pytest.raises(SystemExit, match=r"init_reset names no part of the model: mask_prj \(parts: .*mask_proj"):
        check_stage(_stage(tmp_path, f"classifier.init_from={tmp_path / 'x.pt'}", "classifier.init_reset=[mask_prj]"))


def test_a_start_trained_for_other_classes_or_inputs_is_refused_though_the_shapes_fit():
    from training.inference import classifier_state
    from training.train_classifier import check_start

    cfg = FusionConfig(image_backbone="test_efficientnet", d_model=32, heads=4)
    classes, mean, std = ["nv", "mel", "bkl", "bcc"], [0.5] * 3, [0.5] * 3
    start = classifier_state(cfg, mean, std, DEFAULT_VOCABULARY.dim, classes)
    check_start(start, classes, mean, std, cfg, [])  # the same: fine
    with pytest.raises(ValueError, match=r"other classes \['nv', 'mel', 'bkl', 'bcc'\] \(this config: \['mel', 'nv'"):
        check_start(start, ["mel", "nv", "bkl", "bcc"], mean, std, cfg, [])
    with pytest.raises(ValueError, match=r"pixel mean \[0.5, 0.5, 0.5\]"):
        check_start(start, classes, [0.485, 0.456, 0.406], std, cfg, [])
    with pytest.raises(ValueError, match=r"model heads 4 \(this config: 8\)"):
        check_start(start, classes, mean, std, FusionConfig(image_backbone="test_efficientnet", d_model=32, heads=8), [])
    light = FusionConfig(image_backbone="test_efficientnet", mask_backbone=LIGHT, d_model=32, heads=4)
    with pytest.raises(ValueError, match=r"model mask_backbone None \(this config: 'mobilenetv3_small_050'\)"):
        check_start(start, classes, mean, std, light, [])
    check_start(start, classes, mean, std, light, ["mask_backbone", "mask_proj"])  # swapped on purpose
    # No mask backbone means the image backbone's twin: naming it outright is the same model.
    twin = FusionConfig(image_backbone="test_efficientnet", mask_backbone="test_efficientnet", d_model=32, heads=4)
    check_start(start, classes, mean, std, twin, [])
