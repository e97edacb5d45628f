"""Learning-rate schedules of the training loop, and the configuration that chooses them."""

import pytest
import torch

from training.config import ConfigError, OptimConfig, load_config
from training.loop import make_optimizer, make_scheduler


def _optimizer(optim: OptimConfig):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    return make_optimizer(model, optim, backbone_params=model[0].parameters())


def _lrs(optimizer):
    return [group["lr"] for group in optimizer.param_groups]


def test_cosine_goes_from_each_groups_rate_to_its_floor_over_every_step():
    optim = OptimConfig(epochs=2, lr=1e-3, backbone_lr=1e-4, schedule="cosine", min_lr_ratio=0.01)
    optimizer = _optimizer(optim)
    scheduler = make_scheduler(optimizer, optim, steps_per_epoch=5)
    assert _lrs(optimizer) == pytest.approx([1e-3, 1e-4])
    seen = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        seen.append(_lrs(optimizer))
    assert seen[4] == pytest.approx([0.505e-3, 0.505e-4])  # half way: the mean of rate and floor
    assert seen[-1] == pytest.approx([1e-5, 1e-6])
    heads = [lr[0] for lr in seen]
    assert heads == sorted(heads, reverse=True)


def test_plateau_halves_the_rate_after_patience_epochs_without_progress():
    optim = OptimConfig(lr=1e-3, schedule="plateau", plateau_patience=1, plateau_factor=0.5)
    optimizer = _optimizer(optim)
    scheduler = make_scheduler(optimizer, optim, steps_per_epoch=5)
    for val_loss in (1.0, 1.0, 1.0):
        scheduler.step(val_loss)
    assert _lrs(optimizer) == pytest.approx([5e-4, 5e-4])


def test_a_misspelt_schedule_is_refused_before_training():
    with pytest.raises(ConfigError, match=r"^classifier.optim.schedule: 'cosinus' is not one of \['plateau', 'cosine'\]$"):
        load_config(None, ["classifier.optim.schedule=cosinus"])


@pytest.mark.parametrize("name", ["sampling_power", "source_sampling_power"])
def test_sampling_powers_outside_zero_to_one_are_refused(name):
    with pytest.raises(ConfigError, match=f"^classifier.{name}: expected 0..1, got 2.0$"):
        load_config(None, [f"classifier.{name}=2"])


def test_source_balancing_without_the_balanced_sampler_is_refused():
    with pytest.raises(ConfigError, match="^classifier.source_sampling_power needs classifier.balanced_sampling: true"):
        load_config(None, ["classifier.source_sampling_power=0.5", "classifier.balanced_sampling=false"])
