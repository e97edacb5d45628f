"""Top-1 agreement and max |delta p| between FP32 and FP16 outputs, and the pass limits."""

import numpy as np
import pytest
from engine_helpers import make_manifest

from screening.backends.bundle import BatchOutputs
from screening.engines.fidelity import FidelityTally


def outputs(logits, mask_value=0.9):
    logits = np.asarray(logits, dtype=np.float32)
    return BatchOutputs(mask=np.full((len(logits), 1, 2, 2), mask_value, np.float32), logits=logits)


def test_identical_outputs_pass_with_full_agreement():
    tally = FidelityTally(make_manifest(64))
    logits = np.eye(7, dtype=np.float32)[:3] * 5
    tally.add(["a", "b", "c"], outputs(logits), outputs(logits))
    report = tally.report()
    assert (report.images, report.top1_agreement, report.max_delta_p, report.mask_flip_fraction) == (3, 1.0, 0.0, 0.0)
    assert report.passed
    assert report.summary() == ("top-1 agreement 100.00% (3/3 images), max |delta p| 0.0000 "
                                "(limits: >= 99%, <= 0.02)")


def test_a_changed_top_class_fails_below_99_percent_and_is_named():
    tally = FidelityTally(make_manifest(64))
    ref = np.zeros((4, 7), np.float32)
    ref[:, 5] = 1.0
    cand = ref.copy()
    cand[2] = 0.0
    cand[2, 4] = 1.0  # image "c": nv -> mel
    tally.add(["a", "b", "c", "d"], outputs(ref), outputs(cand))
    report = tally.report()
    assert report.top1_agreement == 0.75
    assert report.disagreements == ["c"]
    assert report.disagreement_margins == [pytest.approx((np.e - 1) / (np.e + 6))]
    assert report.lines()[-1] == "  top class changed on: c (FP32 margin 0.1971)"
    p_top = np.exp(1) / (np.exp(1) + 6)
    assert report.max_delta_p == pytest.approx(p_top - 1 / (np.exp(1) + 6), abs=1e-9)
    assert report.max_delta_risk == pytest.approx(p_top - 1 / (np.exp(1) + 6), abs=1e-9)
    assert report.failures == ["top-1 agreement 75.00% is below 99%",
                               f"max |delta p| {report.max_delta_p:.4f} is above 0.02"]


def test_small_probability_shift_within_limits_passes_and_larger_fails():
    manifest = make_manifest(64)
    ref = np.array([[4.0, 0, 0, 0, 0, 0, 0]], np.float32)
    p0 = np.exp(4) / (np.exp(4) + 6)
    for shift, passes in ((0.05, True), (0.5, False)):
        tally = FidelityTally(manifest)
        tally.add(["x"], outputs(ref), outputs(ref + np.array([[shift, 0, 0, 0, 0, 0, 0]], np.float32)))
        report = tally.report()
        expected = np.exp(4 + shift) / (np.exp(4 + shift) + 6) - p0
        assert report.max_delta_p == pytest.approx(expected, rel=1e-5)
        assert report.passed is passes


def test_temperature_from_the_manifest_is_applied():
    import dataclasses

    ref = np.array([[4.0, 0, 0, 0, 0, 0, 0]], np.float32)
    cand = ref + np.array([[0.5, 0, 0, 0, 0, 0, 0]], np.float32)
    plain = FidelityTally(make_manifest(64))
    hot = FidelityTally(dataclasses.replace(make_manifest(64), temperature=4.0))
    for tally in (plain, hot):
        tally.add(["x"], outputs(ref), outputs(cand))
    assert hot.report().max_delta_p < plain.report().max_delta_p


def test_mask_pixels_crossing_the_threshold_are_counted():
    tally = FidelityTally(make_manifest(64))
    logits = np.eye(7, dtype=np.float32)[:2]
    ref, cand = outputs(logits, 0.9), outputs(logits, 0.9)
    cand.mask[0, 0, 0, 0] = 0.1  # one of 8 pixels flips
    tally.add(["a", "b"], ref, cand)
    assert tally.report().mask_flip_fraction == 1 / 8


def test_empty_and_mismatched_inputs_are_refused():
    tally = FidelityTally(make_manifest(64))
    with pytest.raises(ValueError, match="no images were compared"):
        tally.report()
    with pytest.raises(ValueError, match="output shapes differ"):
        tally.add(["a"], outputs(np.zeros((1, 7))), outputs(np.zeros((2, 7))))


def test_report_dict_carries_the_limits():
    tally = FidelityTally(make_manifest(64))
    tally.add(["a"], outputs(np.eye(7)[:1]), outputs(np.eye(7)[:1]))
    data = tally.report().to_dict()
    assert data["limits"] == {"min_top1_agreement": 0.99, "max_delta_p": 0.02}
    assert data["passed"] is True and data["failures"] == []
