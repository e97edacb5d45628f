"""Test-time augmentation: views, un-flipped masks, averaged logits."""

import numpy as np
import pytest

from screening.tta import TTA_MODES, check_mode, run_views


def _inputs(n=2, size=6):
    rng = np.random.default_rng(0)
    seg = rng.normal(size=(n, 3, size, size)).astype(np.float32)
    return seg, seg, rng.normal(size=(n, 4)).astype(np.float32)


def _model(seg, cls, meta):
    """A 'segmenter' that marks the left half bright pixels and a 'classifier' that reads the
    left-right asymmetry, so every flip changes its logits."""
    mask = (seg[:, :1] > 0).astype(np.float32)
    left = cls[:, :, :, : cls.shape[3] // 2].mean(axis=(1, 2, 3))
    logits = np.stack([left, -left + meta[:, 0]], axis=1)
    return mask, logits


def test_none_is_one_plain_pass():
    seg, cls, meta = _inputs()
    calls = []
    mask, logits = run_views("none", lambda *a: calls.append(a) or _model(*a), seg, cls, meta)
    assert len(calls) == 1
    expected_mask, expected_logits = _model(seg, cls, meta)
    assert np.array_equal(mask, expected_mask) and np.allclose(logits, expected_logits)


@pytest.mark.parametrize("mode, views", [("flip", 2), ("flip4", 4)])
def test_flips_average_logits_and_return_the_mask_upright(mode, views):
    seg, cls, meta = _inputs()
    calls = []
    mask, logits = run_views(mode, lambda *a: calls.append(a) or _model(*a), seg, cls, meta)
    assert len(calls) == views
    # A pixel-wise segmenter gives the same mask in every view once un-flipped.
    assert np.array_equal(mask, _model(seg, cls, meta)[0])
    per_view = [_model(*call)[1] for call in calls]
    assert np.allclose(logits, np.mean(per_view, axis=0))
    assert not np.allclose(logits, _model(seg, cls, meta)[1])  # the flip did change the input


def test_an_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="none, flip, flip4"):
        check_mode("rotate")
    assert TTA_MODES == ("none", "flip", "flip4")
