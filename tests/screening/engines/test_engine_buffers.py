"""Buffer sizes of the two engines for the profile's max batch, with the mask shared on the device."""

import dataclasses

import pytest
from engine_helpers import make_manifest

from screening.engines.buffers import SHARED_MASK, buffer_plan
from screening.errors import BundleError
from screening.metadata import DEFAULT_VOCABULARY

DIM = DEFAULT_VOCABULARY.dim


def test_buffers_are_sized_for_the_max_batch_in_float32():
    plan = buffer_plan(make_manifest(224), max_batch=32)
    sizes = {key: spec.nbytes for key, spec in plan.device.items()}
    assert sizes == {
        "segmenter/image": 32 * 3 * 224 * 224 * 4,  # 19,267,584
        "segmenter/mask": 32 * 1 * 224 * 224 * 4,
        "classifier/image": 32 * 3 * 224 * 224 * 4,
        "classifier/meta": 32 * DIM * 4,
        "classifier/logits": 32 * 7 * 4,
    }
    assert plan.device["segmenter/image"].nbytes == 19_267_584
    assert plan.device_nbytes == sum(sizes.values())
    assert plan.host_nbytes == plan.device_nbytes  # every buffer has a page-locked twin


def test_the_classifier_reads_the_segmenter_mask_buffer():
    plan = buffer_plan(make_manifest(64), max_batch=4)
    assert plan.bindings["segmenter"]["mask"] == SHARED_MASK
    assert plan.bindings["classifier"]["mask"] == SHARED_MASK
    assert "classifier/mask" not in plan.device


def test_a_partial_batch_copies_only_its_own_bytes():
    spec = buffer_plan(make_manifest(64), max_batch=8).device["segmenter/image"]
    assert spec.batch_shape(3) == (3, 3, 64, 64)
    assert spec.batch_nbytes(3) == 3 * 3 * 64 * 64 * 4


def test_mask_shapes_that_do_not_chain_are_a_bundle_error():
    manifest = make_manifest(64)
    seg = dataclasses.replace(manifest.segmenter, outputs={"mask": ["N", 1, 32, 32]})
    bad = dataclasses.replace(manifest, segmenter=seg)
    with pytest.raises(BundleError) as err:
        buffer_plan(bad, max_batch=4)
    assert str(err.value) == ("segmenter output 'mask' has shape [1, 32, 32] per image but the classifier "
                              "input 'mask' expects [1, 64, 64]: the bundle's models do not fit together")
