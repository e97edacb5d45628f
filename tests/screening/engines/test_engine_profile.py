"""Optimisation profile shapes from the manifest, and batch splitting."""

import pytest
from engine_helpers import make_manifest

from screening.engines.profile import InputProfile, batch_slices, check_batches, profile_shapes, resolve_shape
from screening.errors import BundleError, InputError
from screening.metadata import DEFAULT_VOCABULARY

DIM = DEFAULT_VOCABULARY.dim


def test_profile_spans_batch_one_to_max_for_every_manifest_input():
    manifest = make_manifest(224)
    seg = profile_shapes(manifest.segmenter, "segmenter", 16, 32)
    assert seg == {"image": InputProfile((1, 3, 224, 224), (16, 3, 224, 224), (32, 3, 224, 224))}
    cls = profile_shapes(manifest.classifier, "classifier", 8, 8)
    assert list(cls) == ["image", "mask", "meta"]
    assert cls["mask"] == InputProfile((1, 1, 224, 224), (8, 1, 224, 224), (8, 1, 224, 224))
    assert cls["meta"] == InputProfile((1, DIM), (8, DIM), (8, DIM))


def test_shape_without_leading_batch_axis_is_a_bundle_error():
    with pytest.raises(BundleError) as err:
        resolve_shape([1, 3, 64, 64], 4, "segmenter input 'image'")
    assert str(err.value) == ("segmenter input 'image' has shape [1, 3, 64, 64]: "
                              "its first axis must be the batch axis 'N'")


def test_only_the_batch_axis_may_be_symbolic():
    assert resolve_shape(["N", 3, 64, 32], 4, "x") == (4, 3, 64, 32)
    with pytest.raises(BundleError) as err:
        resolve_shape(["N", 3, "H", 64], 4, "segmenter input 'image'")
    assert str(err.value) == ("segmenter input 'image' has dimension 'H' in ['N', 3, 'H', 64]: only the batch axis "
                              "may be symbolic, the others must be positive numbers")


@pytest.mark.parametrize("opt, max_batch, message", [
    (64, 32, "--opt-batch 64 is larger than --max-batch 32"),
    (0, 32, "--opt-batch must be at least 1, got 0"),
    (1, 0, "--max-batch must be at least 1, got 0"),
])
def test_bad_batch_options_are_input_errors(opt, max_batch, message):
    with pytest.raises(InputError) as err:
        check_batches(opt, max_batch)
    assert str(err.value) == message
    assert err.value.exit_code == 2


def test_profile_round_trips_through_a_dict():
    profile = InputProfile((1, 5), (4, 5), (8, 5))
    assert profile.to_dict() == {"min": [1, 5], "opt": [4, 5], "max": [8, 5]}
    assert InputProfile.from_dict(profile.to_dict()) == profile


def test_batches_above_the_max_are_split_in_order():
    assert batch_slices(70, 32) == [slice(0, 32), slice(32, 64), slice(64, 70)]
    assert batch_slices(32, 32) == [slice(0, 32)]
    assert batch_slices(0, 32) == []
    with pytest.raises(ValueError):
        batch_slices(3, 0)
