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
