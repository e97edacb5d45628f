"""`precision: bfloat16` runs a training step's forward pass in bfloat16 (about 1.8 times faster on
CPUs with AMX); the model it trains must stay a float32 model that exports and screens as before."""

from __future__ import annotations

import copy

import pytest
import torch

from screening.metadata import DEFAULT_VOCABULARY
from training.common import training_autocast
from training.config import ConfigError, load_config
from training.models.fusion import FusionClassifier, FusionConfig

CPU = torch.device("cpu")


def test_float32_is_the_default_and_a_misspelt_precision_is_refused():
    assert load_config(None, []).precision == "float32"
    assert load_config(None, ["precision=bfloat16"]).precision == "bfloat16"
    with pytest.raises(ConfigError, match="precision: 'fp16' is not one of"):
        load_config(None, ["precision=fp16"])


def _step(model, config, image, mask, meta, labels):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(1)  # the same dropout draws for every precision
    with training_autocast(config, CPU):
        logits = model(image, mask, meta)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    optimizer.step()
    return logits, float(loss)


def test_a_bfloat16_step_trains_the_float32_weights_as_a_float32_step_does():
    torch.manual_seed(0)
    cfg = FusionConfig(image_backbone="test_efficientnet", mask_backbone="mobilenetv3_small_050", d_model=32, heads=4)
    fp32 = FusionClassifier(cfg, DEFAULT_VOCABULARY.dim, num_classes=4).train()
    bf16 = copy.deepcopy(fp32)
    start = {name: p.detach().clone() for name, p in fp32.named_parameters()}
    image, mask = torch.randn(4, 3, 64, 64), (torch.rand(4, 1, 64, 64) > 0.5).float()
    meta, labels = torch.zeros(4, DEFAULT_VOCABULARY.dim), torch.tensor([0, 1, 2, 3])
    logits_32, loss_32 = _step(fp32, load_config(None, []), image, mask, meta, labels)
    logits_16, loss_16 = _step(bf16, load_config(None, ["precision=bfloat16"]), image, mask, meta, labels)
    assert logits_32.dtype == torch.float32 and logits_16.dtype == torch.bfloat16  # autocast was on
    assert loss_16 == pytest.approx(loss_32, abs=0.05)  # bfloat16 keeps 8 bits of mantissa
    for name, weight in bf16.named_parameters():
        assert weight.dtype == torch.float32, name  # the weights a checkpoint and the export keep
    moved_32 = {n: p.detach() - start[n] for n, p in fp32.named_parameters()}
    moved_16 = {n: p.detach() - start[n] for n, p in bf16.named_parameters()}
    changed = [n for n in moved_32 if moved_32[n].abs().sum() > 0]
    assert changed, "the float32 step changed no weight"
    # The same step, to bfloat16's precision: single small tensors (a norm layer's bias) can
    # point elsewhere, the update as a whole may not.
    flat_32 = torch.cat([moved_32[n].flatten() for n in changed])
    flat_16 = torch.cat([moved_16[n].flatten() for n in changed])
    assert torch.nn.functional.cosine_similarity(flat_32, flat_16, dim=0) > 0.9
