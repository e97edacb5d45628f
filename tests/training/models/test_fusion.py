"""The fusion classifier: shapes of every variant, non-degeneracy, ablations, threshold, freezing."""

from __future__ import annotations

import itertools

import pytest
import torch

from screening.metadata import DEFAULT_VOCABULARY
from training.models.fusion import (FusionClassifier, FusionConfig, backbone_parameters, freeze_backbones,
                                    freeze_image_stem, image_stem)

META_DIM = DEFAULT_VOCABULARY.dim
CLASSES = 7
# Far above float32 noise on logits of size ~0.3 (~1e-7), far below what the branches move.
CHANGED = 1e-5


def _model(**overrides) -> FusionClassifier:
    torch.manual_seed(0)
    cfg = FusionConfig(**{"image_backbone": "test_efficientnet", "d_model": 32, "heads": 4, **overrides})
    return FusionClassifier(cfg, META_DIM, CLASSES).eval()


def _meta(age, sex, site) -> torch.Tensor:
    return torch.from_numpy(DEFAULT_VOCABULARY.encode(age, sex, site)[0]).expand(2, -1)


def _square_mask(top: int, left: int, size: int, probability: float = 0.9) -> torch.Tensor:
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, top:top + size, left:left + size] = probability
    return mask


IMAGE = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
MASK = _square_mask(16, 16, 32)
META = _meta(45, "female", "back")


def _logits(model: FusionClassifier, image=IMAGE, mask=MASK, meta=META) -> torch.Tensor:
    with torch.no_grad():
        return model(image, mask, meta)


VARIANTS = [
    dict(fusion=f, use_meta=m, use_mask=k, mask_input_mode=mode)
    for f, m, k, mode in itertools.product(("cross_attention", "concat"), (True, False), (True, False),
                                           ("binary", "masked_image"))
    if k or mode == "binary"  # the mask mode only matters when the mask branch is on
]
FUSION_X_MODE = list(itertools.product(["cross_attention", "concat"], ["binary", "masked_image"]))


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_every_variant_gives_one_logit_per_class(variant):
    assert _logits(_model(**variant)).shape == (2, CLASSES)


@pytest.mark.parametrize("fusion", ["cross_attention", "concat"])
def test_changing_only_the_metadata_changes_the_logits(fusion):
    model = _model(fusion=fusion)
    other = _meta(85, "male", "palm")
    assert (_logits(model) - _logits(model, meta=other)).abs().max() > CHANGED


@pytest.mark.parametrize("fusion, mode", FUSION_X_MODE)
def test_changing_only_the_mask_changes_the_logits(fusion, mode):
    model = _model(fusion=fusion, mask_input_mode=mode)
    other = _square_mask(0, 30, 20)
    assert (_logits(model) - _logits(model, mask=other)).abs().max() > CHANGED


def test_a_single_pooled_key_would_make_the_query_irrelevant():
    # Why the keys are the feature-map tokens: softmax over one key is 1 whatever the query,
    # so attention over the pooled vector alone returns the same output for any metadata.
    model = _model()
    attention = model.attention["meta"]
    with torch.no_grad():
        tokens = model.image_tokens(model.image_backbone.forward_features(IMAGE))
        pooled = tokens.mean(dim=1, keepdim=True)
        query_a, query_b = model.meta_mlp(META)[:, None], model.meta_mlp(_meta(85, "male", "palm"))[:, None]
        one_key = attention(query_a, pooled, pooled)[0], attention(query_b, pooled, pooled)[0]
        all_keys = attention(query_a, tokens, tokens)[0], attention(query_b, tokens, tokens)[0]
    assert tokens.shape[1] == 4  # 2x2 map of a 64 px image
    torch.testing.assert_close(one_key[0], one_key[1], atol=1e-6, rtol=0)
    assert (all_keys[0] - all_keys[1]).abs().max() > CHANGED


@pytest.mark.parametrize("fusion", ["cross_attention", "concat"])
def test_image_only_ignores_metadata_and_mask(fusion):
    model = _model(fusion=fusion, use_meta=False, use_mask=False)
    assert torch.equal(_logits(model), _logits(model, mask=_square_mask(0, 0, 8), meta=_meta(None, None, None)))
    assert (_logits(model) - _logits(model, image=IMAGE.flip(-1))).abs().max() > CHANGED


def test_meta_off_ignores_metadata_but_not_the_mask():
    model = _model(use_meta=False)
    assert torch.equal(_logits(model), _logits(model, meta=_meta(85, "male", "palm")))
    assert (_logits(model) - _logits(model, mask=_square_mask(0, 30, 20))).abs().max() > CHANGED


@pytest.mark.parametrize("mode", ["binary", "masked_image"])
def test_mask_is_thresholded_inside_the_model(mode):
    model = _model(mask_input_mode=mode, mask_threshold=0.5)
    region = dict(top=16, left=16, size=32)
    below, above, sure = (_logits(model, mask=_square_mask(**region, probability=p)) for p in (0.4, 0.6, 0.9))
    assert (below - above).abs().max() > CHANGED
    assert torch.equal(above, sure)


def test_normalisation_follows_the_image_backbone_and_its_weights():
    assert _model().normalisation == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_meta_hidden_width_gets_a_projection_to_d_model():
    model = _model(meta_hidden=16)
    assert [type(m).__name__ for m in model.meta_mlp] == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert model.meta_mlp[-1].out_features == 32
    assert _logits(model).shape == (2, CLASSES)


@pytest.mark.parametrize("overrides, message", [
    (dict(fusion="sum"), "fusion 'sum' is not one of ('cross_attention', 'concat')"),
    (dict(mask_input_mode="rgb"), "mask_input_mode 'rgb' is not one of ('binary', 'masked_image')"),
    (dict(d_model=30, heads=3), "d_model 30 must be a multiple of heads (3) and of 4"),
    (dict(mask_threshold=1.0), "mask_threshold 1.0 must lie strictly between 0 and 1"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError) as err:
        FusionConfig(**overrides)
    assert str(err.value) == message


@pytest.mark.parametrize("use_mask", [True, False])
def test_backbone_parameters_are_exactly_those_of_the_backbones(use_mask):
    model = _model(use_mask=use_mask)
    backbones = [model.image_backbone] + ([model.mask_backbone] if use_mask else [])
    expected = {id(p) for b in backbones for p in b.parameters()}
    assert {id(p) for p in backbone_parameters(model)} == expected
    assert id(model.head[0].weight) not in {id(p) for p in backbone_parameters(model)}


def test_freeze_backbones_stops_their_gradients_and_batchnorm_statistics():
    model = _model()
    backbones = (model.image_backbone, model.mask_backbone)
    backbone_params = sum(p.numel() for b in backbones for p in b.parameters())

    assert freeze_backbones(model, True) == backbone_params
    model.train()
    model(IMAGE, MASK, META).sum().backward()

    assert not model.image_backbone.training and not model.mask_backbone.training
    assert model.head.training and model.meta_mlp.training
    assert all(p.grad is None for p in model.image_backbone.parameters())
    assert all(p.grad is None for p in model.mask_backbone.parameters())
    assert model.head[0].weight.grad is not None and model.token_proj[1].weight.grad is not None

    freeze_backbones(model, False)
    model.train()
    assert model.image_backbone.training
    assert all(p.requires_grad for p in model.parameters())


def test_freezing_only_the_mask_backbone_leaves_the_image_backbone_training():
    model = _model()
    freeze_backbones(model, True)
    freeze_backbones(model, False, branches=("image",))  # warm-up over, mask stays frozen
    model.train()
    model(IMAGE, MASK, META).sum().backward()

    assert model.image_backbone.training and not model.mask_backbone.training
    assert any(p.grad is not None for p in model.image_backbone.parameters())
    assert all(p.grad is None for p in model.mask_backbone.parameters())


def test_a_frozen_image_stem_stays_frozen_through_the_warm_up_and_after_it():
    model = _model()
    stem = image_stem(model, 2)
    stem_params = sum(p.numel() for module in stem for p in module.parameters())
    assert freeze_image_stem(model, 2) == stem_params > 0
    later = model.image_backbone.blocks[2]
    before = {name: p.detach().clone() for name, p in model.image_backbone.named_parameters()}
    freeze_backbones(model, True)  # the warm-up epoch
    freeze_backbones(model, False)  # fine-tuning: everything but the stem
    model.train()
    assert not any(module.training for block in stem for module in block.modules())
    assert later.training and model.mask_backbone.training

    stem_statistics = [buffer.clone() for buffer in stem[1].buffers()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(IMAGE, MASK, META).sum().backward()
    optimizer.step()
    after = dict(model.image_backbone.named_parameters())
    stem_names = {name for name, _ in model.image_backbone.named_parameters()
                  if name.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1."))}
    assert stem_names and all(torch.equal(before[name], after[name]) for name in stem_names)
    assert any(not torch.equal(before[name], after[name]) for name in after if name.startswith("blocks.2."))
    # The stem's BatchNorm statistics stay the pretrained ones too, not this batch's.
    assert all(torch.equal(old, new) for old, new in zip(stem_statistics, stem[1].buffers()))


def test_freezing_more_blocks_than_the_backbone_has_or_a_negative_number_is_refused():
    model = _model()
    with pytest.raises(ValueError, match="more than"):
        freeze_image_stem(model, len(model.image_backbone.blocks) + 1)
    with pytest.raises(ValueError, match="0 or more"):
        freeze_image_stem(model, -1)
    assert freeze_image_stem(model, 0) == 0 and all(p.requires_grad for p in model.parameters())
