"""Tests for bench/bn_adapt_probe.py: BatchNorm statistics re-estimated on a clinic's own images."""

from __future__ import annotations

import pytest
import torch

from bn_adapt_probe import adapt_batchnorm, batchnorms


class Tiny(torch.nn.Module):
    """image -> conv -> BatchNorm -> dropout -> linear, called like the fusion classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, image, mask, meta):
        return self.head(self.drop(self.bn(self.conv(image)).mean(dim=(2, 3))))


def clinic(shift: float, batches: int = 3) -> list[dict[str, torch.Tensor]]:
    """A clinic whose camera adds ``shift`` to every pixel."""
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(8, 3, 5, 5, generator=generator) + shift, "mask": torch.zeros(8, 1, 5, 5),
             "meta": torch.zeros(8, 2)} for _ in range(batches)]


@pytest.fixture()
def trained() -> Tiny:
    torch.manual_seed(0)
    model = Tiny()
    model.bn.running_mean.fill_(0.5)
    model.bn.running_var.fill_(2.0)
    return model.eval()


def conv_statistics(model: Tiny, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """What AdaBN stores: the mean over batches of each batch's channel mean and (unbiased) variance,
    the statistics every BatchNorm layer normalised its batch with during the pass."""
    with torch.no_grad():
        per_batch = [model.conv(b["image"]).transpose(0, 1).reshape(4, -1) for b in batches]
    return (torch.stack([out.mean(dim=1) for out in per_batch]).mean(dim=0),
            torch.stack([out.var(dim=1) for out in per_batch]).mean(dim=0))


def test_the_adapted_model_normalises_with_the_clinics_own_statistics(trained):
    images = clinic(shift=3.0)
    adapted = adapt_batchnorm(trained, images, weight=1.0)
    mean, var = conv_statistics(trained, images)
    torch.testing.assert_close(adapted.bn.running_mean, mean)
    torch.testing.assert_close(adapted.bn.running_var, var)


def test_half_adaptation_is_the_mean_of_the_trained_and_the_clinics_statistics(trained):
    images = clinic(shift=3.0)
    full, half = adapt_batchnorm(trained, images, 1.0), adapt_batchnorm(trained, images, 0.5)
    torch.testing.assert_close(half.bn.running_mean, (full.bn.running_mean + 0.5) / 2)
    torch.testing.assert_close(half.bn.running_var, (full.bn.running_var + 2.0) / 2)


def test_the_original_model_and_the_learnt_weights_are_left_as_they_were(trained):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    adapted = adapt_batchnorm(trained, clinic(shift=3.0), weight=1.0)
    for name, value in trained.state_dict().items():
        assert torch.equal(value, before[name]), name
    for name in ("conv.weight", "bn.weight", "bn.bias", "head.weight"):
        assert torch.equal(adapted.state_dict()[name], before[name]), name


def test_the_adapted_model_predicts_deterministically_in_eval_mode(trained):
    """Dropout off and BatchNorm on its stored statistics: the same image gives the same logits."""
    adapted = adapt_batchnorm(trained, clinic(shift=3.0), weight=1.0)
    assert not any(module.training for module in adapted.modules())
    batch = clinic(shift=3.0, batches=1)[0]
    with torch.no_grad():
        assert torch.equal(adapted(**batch), adapted(**batch))
    assert batchnorms(adapted)[0].momentum is None


class TwoLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.BatchNorm2d(3)
        self.later = torch.nn.BatchNorm2d(3)

    def forward(self, image, mask, meta):
        return self.later(self.first(image))


def test_only_the_named_layers_adapt():
    """Adapting the first layers only leaves the later layers' trained statistics as they were."""
    model = TwoLayers()
    model.later.running_mean.fill_(0.5)
    adapted = adapt_batchnorm(model.eval(), clinic(shift=3.0), weight=1.0, prefixes=("first",))
    assert torch.all(adapted.first.running_mean > 2.5)
    assert torch.equal(adapted.later.running_mean, torch.full((3,), 0.5))
    assert batchnorms(adapted, ("first",)) == [adapted.first]
