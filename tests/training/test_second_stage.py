"""A second fine-tuning stage: a config that builds on another, weights carried over from the
first stage, and the weights of the last epochs averaged."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ..conftest import REPO, tiny_overrides
from training.config import ConfigError, load_config
from training.loop import average_state_dicts


def test_a_config_builds_on_its_base_and_changes_only_what_it_names(tmp_path):
    (tmp_path / "stage1.yaml").write_text(
        "seed: 3\nclassifier:\n  meta_dropout: 0.3\n  optim: {epochs: 5, lr: 0.001}\n")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "stage2.yaml").write_text(
        "base: ../stage1.yaml\nclassifier:\n  stage_dir: classifier2\n  optim: {epochs: 8}\n")
    config = load_config(tmp_path / "nested" / "stage2.yaml", ["classifier.optim.lr=0.0005"])
    assert config.seed == 3 and config.classifier.meta_dropout == 0.3  # from the base
    assert config.classifier.optim.epochs == 8  # the file itself wins over its base
    assert config.classifier.optim.lr == 0.0005  # and --set wins over both
    assert config.classifier_dir == config.out / "classifier2"


def test_a_base_chain_that_comes_back_to_itself_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="base chain comes back to itself"):
        load_config(tmp_path / "a.yaml")


def test_a_missing_base_names_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_config(tmp_path / "a.yaml")


def test_averaging_takes_the_mean_of_floating_tensors_and_the_last_counter():
    first = {"w": torch.tensor([1.0, 2.0]), "bn.running_var": torch.tensor([1.0]),
             "bn.num_batches_tracked": torch.tensor(10)}
    second = {"w": torch.tensor([3.0, 6.0]), "bn.running_var": torch.tensor([3.0]),
              "bn.num_batches_tracked": torch.tensor(20)}
    averaged = average_state_dicts([first, second])
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(averaged["bn.running_var"], torch.tensor([2.0]))
    assert averaged["bn.num_batches_tracked"].item() == 20
    with pytest.raises(ValueError):
        average_state_dicts([])


def test_a_second_stage_starts_from_the_first_stages_weights_and_averages_its_last_epochs(trained_tiny):
    from training.train_classifier import train

    first = trained_tiny.classifier_dir / "last.pt"
    # Learning rates of zero: whatever the second stage ends with can only be what it started from.
    config = load_config(None, tiny_overrides(trained_tiny.out) + [
        f"classifier.init_from={first}", "classifier.stage_dir=classifier2", "classifier.optim.epochs=2",
        "classifier.optim.average_last=2", "classifier.optim.lr=0", "classifier.optim.weight_decay=0"])
    train(config)

    stage = trained_tiny.out / "classifier2"
    assert (stage / "epoch-001.weights.pt").is_file() and (stage / "epoch-002.weights.pt").is_file()
    started = torch.load(first, weights_only=False)["model"]
    averaged = torch.load(stage / "averaged.pt", weights_only=False)
    assert averaged["averaged_epochs"] == [1, 2]
    weights = [k for k, v in started.items() if v.is_floating_point() and "running_" not in k]
    assert weights and all(torch.equal(averaged["model"][k], started[k]) for k in weights)
    history = [json.loads(line) for line in (stage / "history.jsonl").read_text().splitlines()]
    assert [h.get("epoch") for h in history[:2]] == [1, 2] and history[-1]["averaged_epochs"] == [1, 2]
    assert (stage / "best.pt").is_file()
    # The first stage's checkpoints are untouched.
    assert torch.equal(torch.load(first, weights_only=False)["model"][weights[0]], started[weights[0]])


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    if config.classifier.init_from:  # a second stage starts from a first stage of the same out_dir
        assert config.classifier.init_from.startswith(config.out_dir)
        assert config.classifier.stage_dir != "classifier"


def test_each_stage_evaluates_beside_its_own_weights_and_export_pairs_them(trained_tiny, tmp_path):
    from training.evaluate import eval_dir, evaluate
    from training.export import EvaluationMismatch, ReleaseError, export_bundle
    from training.train_classifier import train

    # A copy of the run: this test re-evaluates, and the session's other tests read its eval folder.
    run = tmp_path / "run"
    shutil.copytree(trained_tiny.out, run, ignore=shutil.ignore_patterns("bundle", "classifier2"))
    first = load_config(None, tiny_overrides(run))
    first_report = (eval_dir(first) / "evaluation.json").read_text()
    second = load_config(None, tiny_overrides(run) + [
        f"classifier.init_from={run / 'classifier' / 'last.pt'}", "classifier.stage_dir=classifier2",
        "classifier.optim.epochs=1", "classifier.optim.lr=0.0005", "export.version=0.0.2"])
    train(second)

    # Not yet evaluated: the first stage's temperature and thresholds are not the second's, and a
    # release without its own operating points is refused before anything is written.
    assert eval_dir(second) == run / "classifier2" / "eval" != eval_dir(first)
    with pytest.raises(ReleaseError, match=r"classifier2/eval/evaluation.json not found: a release bundle needs "
                                           r"the temperature and operating points of its own evaluation"):
        export_bundle(second, release=True)
    assert not (run / "bundle").exists()

    report = evaluate(second)
    assert report["checkpoint"]["path"].endswith("classifier2/best.pt")
    # Evaluating the second stage left the first stage's evaluation as it was.
    assert (eval_dir(first) / "evaluation.json").read_text() == first_report
    manifest = json.loads((export_bundle(second) / "manifest.json").read_text())
    assert manifest["temperature"] == pytest.approx(report["temperature"])
    # The bundle says which weights its figures are of.
    assert manifest["training"]["evaluation"]["checkpoint"] == report["checkpoint"]

    # Retrained after its evaluation (here: other weights in best.pt): refused until evaluated again.
    shutil.copy(run / "classifier" / "best.pt", run / "classifier2" / "best.pt")
    with pytest.raises(EvaluationMismatch, match=r"evaluated .*classifier2/best.pt .*not the .*classifier2/best.pt "
                                                 r"being exported: run `python -m training evaluate`"):
        export_bundle(second, force=True)
