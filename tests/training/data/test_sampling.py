"""Class-balanced sampling."""

import pandas as pd
import pytest

from ...conftest import tiny_overrides
from training import train_classifier
from training.config import load_config
from training.data.sampling import class_balanced_sampler


def test_rare_class_is_drawn_as_often_as_the_common_one():
    labels = [0] * 180 + [1] * 20
    draws = list(class_balanced_sampler(labels, num_samples=4000, seed=0))
    share = sum(labels[i] for i in draws) / len(draws)
    assert abs(share - 0.5) < 0.04
    assert len(draws) == 4000


def test_default_length_and_seeded_order():
    labels = [0] * 30 + [1] * 10 + [2] * 10
    a, b = list(class_balanced_sampler(labels, seed=3)), list(class_balanced_sampler(labels, seed=3))
    assert a == b and len(a) == 50
    assert list(class_balanced_sampler(labels, seed=4)) != a


def test_empty_labels_are_refused():
    with pytest.raises(ValueError, match="cannot sample from an empty dataset"):
        class_balanced_sampler([])


def _share_of_class_1(labels, power):
    draws = list(class_balanced_sampler(labels, num_samples=20000, seed=0, power=power))
    return sum(labels[i] for i in draws) / len(draws)


def test_power_moves_between_natural_and_balanced_frequencies():
    labels = [0] * 900 + [1] * 100
    assert abs(_share_of_class_1(labels, 0.0) - 0.10) < 0.01  # as often as it occurs
    assert abs(_share_of_class_1(labels, 0.5) - 0.25) < 0.01  # sqrt(100) / (sqrt(900) + sqrt(100))
    assert abs(_share_of_class_1(labels, 1.0) - 0.50) < 0.01


def test_power_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="^sampling power must be between 0 and 1, got 1.5$"):
        class_balanced_sampler([0, 1], power=1.5)
    with pytest.raises(ValueError, match="^group sampling power must be between 0 and 1, got -0.5$"):
        class_balanced_sampler([0, 1], groups=["a", "b"], group_power=-0.5)


def _draws_by_source(group_power, power=1.0):
    """Shares of the small source and, per source, of class 1, over 40,000 draws. The sources'
    class mixes differ, as real ones do: the big one is 8:1 class 0, the small one 1:4."""
    labels = [0] * 800 + [1] * 100 + [0] * 20 + [1] * 80
    groups = ["thumbnails"] * 900 + ["clinic"] * 100
    draws = list(class_balanced_sampler(labels, num_samples=40000, seed=0, power=power, groups=groups,
                                        group_power=group_power))
    small = [i for i in draws if groups[i] == "clinic"]
    big = [i for i in draws if groups[i] == "thumbnails"]
    return (len(small) / len(draws), sum(labels[i] for i in big) / len(big),
            sum(labels[i] for i in small) / len(small), sum(labels[i] for i in draws) / len(draws))


def test_group_power_gives_each_source_its_share_and_balances_the_classes_within_it():
    small, class_1_big, class_1_small, class_1 = _draws_by_source(0.5)
    assert small == pytest.approx(0.25, abs=0.01)  # sqrt(100) / (sqrt(900) + sqrt(100))
    assert class_1_big == pytest.approx(0.5, abs=0.015) and class_1_small == pytest.approx(0.5, abs=0.02)
    assert class_1 == pytest.approx(0.5, abs=0.01)
    assert _draws_by_source(1.0)[0] == pytest.approx(0.50, abs=0.01)


def test_group_power_with_natural_class_frequencies_keeps_each_source_s_mix():
    small, class_1_big, class_1_small, _ = _draws_by_source(0.5, power=0.0)
    assert small == pytest.approx(0.25, abs=0.01)
    assert class_1_big == pytest.approx(100 / 900, abs=0.01) and class_1_small == pytest.approx(0.8, abs=0.02)


def test_group_power_zero_is_the_plain_class_balanced_sampler():
    labels, groups = [0] * 30 + [1] * 10, ["a"] * 35 + ["b"] * 5
    assert list(class_balanced_sampler(labels, seed=1, groups=groups, group_power=0.0)) == \
        list(class_balanced_sampler(labels, seed=1))


def test_groups_must_match_the_labels():
    with pytest.raises(ValueError, match="^1 groups for 2 labels$"):
        class_balanced_sampler([0, 1], groups=["a"], group_power=0.5)


def test_training_draws_by_the_source_of_every_training_image(trained_tiny, tmp_path, monkeypatch):
    """The sampler is tested above; this checks that training hands it each image's source."""
    index = pd.read_csv(trained_tiny.out / "index.csv", keep_default_na=False)
    index["source"] = ["clinic_a" if i % 3 else "clinic_b" for i in range(len(index))]
    index.to_csv(tmp_path / "index.csv", index=False)
    config = load_config(None, tiny_overrides(trained_tiny.out) + [
        f"data.index={tmp_path / 'index.csv'}", f"classifier.stage_dir={tmp_path / 'stage'}",
        "classifier.balanced_sampling=true", "classifier.source_sampling_power=0.5"])

    class Drawn(Exception):
        pass

    seen = {}

    def spy(labels, **kwargs):
        seen.update(kwargs, labels=list(labels))
        raise Drawn  # the sampler is all this test needs; no training

    monkeypatch.setattr(train_classifier, "class_balanced_sampler", spy)
    with pytest.raises(Drawn):
        train_classifier.train(config)
    assert seen["groups"] == list(index.loc[index["split"] == "train", "source"])
    assert {"clinic_a", "clinic_b"} <= set(seen["groups"]) and seen["group_power"] == 0.5
    assert len(seen["labels"]) == len(seen["groups"])
