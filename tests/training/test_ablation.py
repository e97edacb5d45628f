"""The ablation command on sample_data: five rows, cached features reused, the shipped head code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from screening.metadata import DEFAULT_VOCABULARY
from training.ablation import (COLUMNS, VARIANTS, _inputs, _split_dataset, ablation_dir, cached_features, main,
                               render_table, seed_summary, variant_model)
from training.common import read_index, split
from training.config import load_config
from training.data.prepare import main as prepare_main
from training.masks import mask_cache_dir
from training.models.fusion import FusionClassifier, FusionConfig
from training.train_segmenter import train as train_segmenter

from ..conftest import REPO, SAMPLE_DATA, tiny_overrides

EPOCHS = 4
VARIANT_NAMES = ["image only", "concat fusion (meta + mask)", "cross-attention, meta only",
                 "cross-attention, mask only", "cross-attention, meta + mask (proposed)"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny tensors gain nothing from two, and on a CPU shared with other jobs the
    second thread's barrier waits made this file ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory) -> Path:
    """A prepared sample_data index and a one-epoch tiny segmenter: all the ablation needs."""
    out = tmp_path_factory.mktemp("ablation_run")
    assert prepare_main(["--source", str(SAMPLE_DATA / "labels.csv"),
                         "--classes", str(REPO / "configs" / "classes" / "sample4.yaml"),
                         "--out", str(out / "index.csv")]) == 0
    train_segmenter(load_config(None, [*tiny_overrides(out), "segmenter.optim.epochs=1"]))
    return out


def _argv(out: Path) -> list[str]:
    return [arg for override in tiny_overrides(out) for arg in ("--set", override)] + ["--epochs", str(EPOCHS)]


@pytest.fixture(scope="module")
def two_runs(segmented):
    """The command run twice on the same config; the feature file's mtime after each run."""
    folder = segmented / "ablation"
    runs = []
    for _ in range(2):
        assert main(_argv(segmented)) == 0
        result = json.loads((folder / "ablation.json").read_text())
        runs.append((result, (folder / "features.npz").stat().st_mtime_ns))
    (first, first_mtime), (second, second_mtime) = runs
    return first, second, first_mtime, second_mtime


def test_the_table_has_five_rows_with_every_column(two_runs):
    first, _, _, _ = two_runs
    assert [row["variant"] for row in first["rows"]] == VARIANT_NAMES
    assert first["images"] == {"train": 52, "val": 20}
    for row in first["rows"]:
        for key, _ in COLUMNS:
            assert isinstance(row[key], float) and 0.0 <= row[key] <= 1.0, (row["variant"], key, row[key])
        assert 1 <= row["best_epoch"] <= EPOCHS
    switches = [(row["fusion"], row["use_meta"], row["use_mask"]) for row in first["rows"]]
    assert switches == [("cross_attention", False, False), ("concat", True, True),
                        ("cross_attention", True, False), ("cross_attention", False, True),
                        ("cross_attention", True, True)]


def test_the_segmenter_line_scores_the_cached_masks(two_runs, segmented):
    segmentation = two_runs[0]["segmentation"]
    assert segmentation["n_images"] == 20
    assert 0.0 <= segmentation["thresholded_jaccard"] <= segmentation["iou"] <= 1.0
    assert 0.0 <= segmentation["dice"] <= 1.0
    markdown = (segmented / "ablation" / "ablation.md").read_text()
    assert f"Segmenter on the 20 validation masks: Dice {segmentation['dice']:.3f}, thresholded Jaccard " \
           f"{segmentation['thresholded_jaccard']:.3f}" in markdown


def test_the_markdown_says_how_it_was_made(two_runs, segmented):
    markdown = (segmented / "ablation" / "ablation.md").read_text()
    assert "Backbones frozen, features cached" in markdown
    assert f"{EPOCHS} epochs per variant" in markdown
    assert "Command: `python -m training ablation --set out_dir=" in markdown
    assert markdown.count("\n| ") == 1 + len(VARIANTS)  # header and one line per variant
    assert "| cross-attention, meta + mask (proposed) | " in markdown
    assert two_runs[0]["note"] == "backbones frozen, features cached"


def test_a_second_run_reuses_the_features_and_reproduces_the_table(two_runs):
    first, second, first_mtime, second_mtime = two_runs
    assert not first["feature_cache"]["reused"] and second["feature_cache"]["reused"]
    assert second_mtime == first_mtime  # the feature file was not rewritten
    for a, b in zip(first["rows"], second["rows"], strict=True):
        assert {key: a[key] for key, _ in COLUMNS} == {key: b[key] for key, _ in COLUMNS}
        assert a["best_epoch"] == b["best_epoch"]


def test_several_seeds_give_mean_and_spread_of_the_same_runs(two_runs, segmented):
    """--seeds 0 1: each row is the mean ± sd of two runs, and the seed-0 run is the single-seed table's."""
    single, _, _, _ = two_runs
    assert main([*_argv(segmented), "--seeds", "0", "1"]) == 0
    result = json.loads((segmented / "ablation" / "ablation.json").read_text())
    assert result["seeds"] == [0, 1] and result["feature_cache"]["reused"]
    for row, alone in zip(result["rows"], single["rows"], strict=True):
        assert [run["seed"] for run in row["runs"]] == [0, 1]
        assert {key: row["runs"][0][key] for key, _ in COLUMNS} == {key: alone[key] for key, _ in COLUMNS}
        for key, _ in COLUMNS:
            values = [run[key] for run in row["runs"]]
            assert row[key] == pytest.approx(np.mean(values))
            assert row["sd"][key] == pytest.approx(abs(values[0] - values[1]) / np.sqrt(2))
    markdown = (segmented / "ablation" / "ablation.md").read_text()
    assert "Same data, split and seeds (0, 1) for every row" in markdown
    assert "mean ± sample standard deviation over the 2 seeds" in markdown
    assert markdown.count(" ± ") >= len(VARIANTS) * len(COLUMNS)


def test_a_repeated_seed_is_refused(segmented, capsys):
    with pytest.raises(SystemExit):
        main([*_argv(segmented), "--seeds", "0", "0"])
    assert "--seeds repeats a seed: [0, 0]" in capsys.readouterr().err


def test_a_metric_one_seed_cannot_compute_has_no_mean():
    runs = [{"key": "k", "variant": "v", "fusion": "concat", "use_meta": True, "use_mask": True, "epochs": 2,
             "best_epoch": epoch, "seconds": 1.0, **{key: 0.5 for key, _ in COLUMNS}} for epoch in (1, 2)]
    runs[1]["melanoma_auc"] = None
    row = seed_summary(runs, [3, 4])
    assert row["melanoma_auc"] is None and row["sd"]["melanoma_auc"] is None
    assert row["accuracy"] == 0.5 and row["sd"]["accuracy"] == 0.0
    assert row["best_epochs"] == [1, 2] and row["seconds"] == 2.0
    assert render_table([row]).splitlines()[-1].endswith("| 0.500 ± 0.000 | n/a |")


def test_the_cache_holds_what_the_trained_model_sees(two_runs, segmented):
    """A variant model with the cached backbones gives, from pixels, what its head gives from the cache."""
    config = load_config(None, tiny_overrides(segmented))
    index = read_index(config)
    cache = cached_features(config, index, mask_cache_dir(config))
    val = _split_dataset(config, split(index, "val"), mask_cache_dir(config))
    items = [val[i] for i in range(4)]
    image, mask, meta = (torch.stack([item[k] for item in items]) for k in ("image", "mask", "meta"))
    for variant in VARIANTS:
        model = variant_model(config, variant, cache.backbones, num_classes=4).eval()
        with torch.no_grad():
            from_pixels = model(image, mask, meta)
            cached = _inputs(cache.splits["val"], np.arange(4), torch.device("cpu"))
            from_cache = model.forward_from_features(*cached)
        # Only the float16 storage of the feature map separates the two.
        torch.testing.assert_close(from_cache, from_pixels, atol=2e-3, rtol=1e-3)


def test_changing_the_mask_input_recomputes_the_features(two_runs, segmented):
    config = load_config(None, [*tiny_overrides(segmented), "classifier.model.mask_input_mode=masked_image"])
    before = (segmented / "ablation" / "features.npz").stat().st_mtime_ns
    cache = cached_features(config, read_index(config), mask_cache_dir(config))
    assert not cache.reused
    assert (segmented / "ablation" / "features.npz").stat().st_mtime_ns != before
    key = json.loads((segmented / "ablation" / "features.json").read_text())
    assert key["mask_input_mode"] == "masked_image"


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.key for v in VARIANTS])
def test_forward_is_backbone_features_then_forward_from_features_exactly(variant):
    torch.manual_seed(0)
    cfg = FusionConfig(image_backbone="test_efficientnet", d_model=32, heads=4, use_meta=variant.use_meta,
                       use_mask=variant.use_mask, fusion=variant.fusion)
    model = FusionClassifier(cfg, DEFAULT_VOCABULARY.dim, num_classes=4).eval()
    image, mask = torch.randn(3, 3, 64, 64), torch.rand(3, 1, 64, 64)
    meta = torch.from_numpy(np.stack([DEFAULT_VOCABULARY.encode(age, sex, site)[0] for age, sex, site in
                                      [(35, "female", "back"), (None, "male", "palm"), (82, "", "face")]]))
    with torch.no_grad():
        feature_map, mask_vector = model.backbone_features(image, mask)
        from_features = model.forward_from_features(feature_map, mask_vector, meta)
        assert torch.equal(model(image, mask, meta), from_features)
    assert (mask_vector is None) == (not variant.use_mask)


def test_an_ablation_without_a_segmenter_says_what_to_train_first(tmp_path):
    with pytest.raises(SystemExit, match=r"segmenter[/\\]best.pt does not exist; train the segmenter first"):
        main(_argv(tmp_path))
    assert not ablation_dir(load_config(None, tiny_overrides(tmp_path))).exists()


def test_an_ablation_refuses_source_balancing_it_cannot_do(tmp_path):
    with pytest.raises(SystemExit, match=r"does not balance sources; set classifier.source_sampling_power to 0"):
        main([*_argv(tmp_path), "--set", "classifier.source_sampling_power=0.5"])
    assert not ablation_dir(load_config(None, tiny_overrides(tmp_path))).exists()
