"""Class-balanced sampling."""

import pytest

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


def _share_of_small_source(group_power):
    # A big source (900 images) and a small one (100), both half class 0 and half class 1.
    labels = [0, 1] * 450 + [0, 1] * 50
    groups = ["thumbnails"] * 900 + ["clinic"] * 100
    draws = list(class_balanced_sampler(labels, num_samples=20000, seed=0, power=1.0, groups=groups,
                                        group_power=group_power))
    return sum(groups[i] == "clinic" for i in draws) / len(draws), sum(labels[i] for i in draws) / len(draws)


def test_group_power_draws_small_sources_more_often_and_keeps_the_classes_balanced():
    assert _share_of_small_source(0.0)[0] == pytest.approx(0.10, abs=0.01)  # as often as it occurs
    assert _share_of_small_source(0.5)[0] == pytest.approx(0.25, abs=0.01)  # sqrt(100) / (sqrt(900) + sqrt(100))
    assert _share_of_small_source(1.0)[0] == pytest.approx(0.50, abs=0.01)
    assert _share_of_small_source(1.0)[1] == pytest.approx(0.50, abs=0.01)


def test_groups_must_match_the_labels():
    with pytest.raises(ValueError, match="^1 groups for 2 labels$"):
        class_balanced_sampler([0, 1], groups=["a"], group_power=0.5)
