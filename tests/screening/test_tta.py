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


# -- through the CLI: --tta, the bundle's default, and resume never mixing the two ----------------

import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from screening.cli import cli  # noqa: E402


def _screen(images, meta, out, bundle, *extra):
    return CliRunner().invoke(cli, ["folder", str(images), "--meta", str(meta), "--out", str(out), "--bundle",
                                    str(bundle), "--backend", "onnxruntime", "--batch-size", "3", *extra])


def _rows(path):
    return {r["image"]: r for r in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))}


def test_flip_tta_screens_every_image_and_keeps_a_symmetric_model_exact(tmp_path, make_folder, tiny_bundle,
                                                                           monkeypatch):
    """The tiny bundle's models pool over the whole image, so a mirrored image gives the same
    numbers: flip TTA must then reproduce them exactly (masks un-flipped, logits averaged)."""
    monkeypatch.setenv("SCREEN_BUNDLE", str(tmp_path / "no-such-bundle"))
    images, meta = make_folder(5)
    plain, flipped = tmp_path / "plain.csv", tmp_path / "flip.csv"
    assert _screen(images, meta, plain, tiny_bundle).exit_code == 0
    result = _screen(images, meta, flipped, tiny_bundle, "--tta", "flip")
    assert result.exit_code == 0, result.output
    a, b = _rows(plain), _rows(flipped)
    assert set(a) == set(b) and all(r["status"] == "ok" for r in b.values())
    for key in ("risk", "lesion_area", "prediction"):
        assert [a[k][key] for k in sorted(a)] == [b[k][key] for k in sorted(b)]
    # Another TTA is another bundle identity: the rows say so, and a resume would not mix them.
    assert {r["bundle"] for r in a.values()} != {r["bundle"] for r in b.values()}


def test_the_bundle_default_tta_applies_without_the_option(tmp_path, make_folder, tiny_bundle, monkeypatch):
    monkeypatch.setenv("SCREEN_BUNDLE", str(tmp_path / "no-such-bundle"))
    images, meta = make_folder(4)
    bundle = tmp_path / "tiny-flip"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["tta"] = "flip"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    by_default, explicit = tmp_path / "default.csv", tmp_path / "explicit.csv"
    assert _screen(images, meta, by_default, bundle).exit_code == 0
    assert _screen(images, meta, explicit, tiny_bundle, "--tta", "flip").exit_code == 0
    assert [r["risk"] for r in _rows(by_default).values()] == [r["risk"] for r in _rows(explicit).values()]


def test_an_unknown_tta_is_refused_with_the_choices(tmp_path, make_folder, tiny_bundle):
    images, meta = make_folder(1)
    result = _screen(images, meta, tmp_path / "r.csv", tiny_bundle, "--tta", "rotate")
    assert result.exit_code == 2 and "'rotate' is not one of 'none', 'flip', 'flip4'" in result.output


def test_a_tta_other_than_the_bundles_warns_that_the_flag_was_fitted_without_it(tmp_path, make_folder, tiny_bundle,
                                                                                 monkeypatch):
    monkeypatch.setenv("SCREEN_BUNDLE", str(tmp_path / "no-such-bundle"))
    images, meta = make_folder(3)
    bundle = tmp_path / "tiny-points"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["operating_points"] = [{"name": "sens95", "target_sensitivity": 0.95, "threshold": 0.5,
                                     "sensitivity": 0.95, "specificity": 0.5, "n_malignant": 40, "n_benign": 60,
                                     "fitted_on": "tests"}]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = _screen(images, meta, tmp_path / "flip.csv", bundle, "--tta", "flip")
    assert result.exit_code == 0, result.output
    assert "operating points were fitted on scores screened with the bundle's TTA (none); with --tta flip" \
        in result.output
    assert "operating points were fitted" not in _screen(images, meta, tmp_path / "plain.csv", bundle).output
