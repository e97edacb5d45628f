"""Training and evaluation run their convolutions in NHWC ("channels last"), about 30 % less time per
step on the CPU; the numbers must be those of NCHW up to float rounding."""

from __future__ import annotations

import copy

import torch

from screening.metadata import DEFAULT_VOCABULARY
from training.common import place
from training.config import load_config
from training.models.fusion import FusionClassifier, FusionConfig

CPU = torch.device("cpu")


def test_place_puts_models_and_image_batches_in_nhwc_and_leaves_the_rest():
    image, meta = torch.randn(2, 3, 8, 8), torch.randn(2, 5)
    assert place(image, CPU, True).is_contiguous(memory_format=torch.channels_last)
    assert not place(image, CPU, False).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(place(meta, CPU, True), meta)  # not image-like: as it was
    conv = place(torch.nn.Conv2d(3, 4, 3), CPU, True)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert load_config(None, []).channels_last  # the default


def test_nhwc_gives_the_logits_and_gradients_of_nchw():
    torch.manual_seed(0)
    cfg = FusionConfig(image_backbone="test_efficientnet", mask_backbone="mobilenetv3_small_050", d_model=32, heads=4)
    nchw = FusionClassifier(cfg, DEFAULT_VOCABULARY.dim, num_classes=4).train()
    nhwc = place(copy.deepcopy(nchw), CPU, True)
    image, mask = torch.randn(4, 3, 64, 64), (torch.rand(4, 1, 64, 64) > 0.5).float()
    meta, labels = torch.zeros(4, DEFAULT_VOCABULARY.dim), torch.tensor([0, 1, 2, 3])
    results = []
    for model, channels_last in ((nchw, False), (nhwc, True)):
        torch.manual_seed(1)  # the same dropout draws in both
        logits = model(place(image, CPU, channels_last), place(mask, CPU, channels_last), meta)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        results.append((logits.detach(), model.image_backbone.conv_stem.weight.grad.clone()))
    (logits_a, grad_a), (logits_b, grad_b) = results
    torch.testing.assert_close(logits_b, logits_a, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad_b, grad_a, atol=1e-5, rtol=1e-3)
