"""Checkpoints carry what they were trained from: pixels, the segmenter's masks, their settings.

An ML engineer who forgets a `--set`, retrains the segmenter after the classifier, or resumes with
an edited config must be stopped with the reason, not handed a bundle that screens other inputs
than its models learnt (the ONNX parity check cannot see that: both sides get the same inputs).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from screening.manifest import sha256_file

from ..conftest import tiny_overrides
from training.common import load_checkpoint, save_checkpoint
from training.config import load_config
from training.evaluate import eval_dir, evaluate
from training.export import EvaluationMismatch, _evaluation, export_bundle
from training.lineage import MASKS_FROM, PIXELS, SETTINGS, changed_settings, check_resume, stage_settings
from training.masks import segmenter_checkpoint
from training.train_classifier import train as train_classifier


@pytest.fixture
def run(trained_tiny, tmp_path):
    """A private copy of the tiny trained run (the session's own must stay as it is)."""
    out = tmp_path / "run"
    shutil.copytree(trained_tiny.out, out, ignore=shutil.ignore_patterns("bundle"))
    return lambda *more: load_config(None, [*tiny_overrides(out), *more])


def retrain_segmenter(config) -> None:
    """What a retrained segmenter looks like from outside: the same model, other weights."""
    path = segmenter_checkpoint(config)
    state = load_checkpoint(path)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(path, state)


def test_checkpoints_record_their_pixels_masks_and_settings(run):
    config = run()
    segmenter = load_checkpoint(segmenter_checkpoint(config))
    classifier = load_checkpoint(config.classifier_dir / "best.pt")
    assert segmenter[PIXELS] == classifier[PIXELS] == {"input_size": 64, "preprocessing": []}
    assert len(classifier[MASKS_FROM]["segmenter_sha256"]) == 64
    assert classifier[SETTINGS]["classifier"]["optim"]["lr"] == 0.003
    assert classifier[SETTINGS]["data"]["input_size"] == segmenter[SETTINGS]["data"]["input_size"] == 64


@pytest.mark.parametrize("override, reason", [
    ("data.preprocessing=[{name: shades_of_gray}]",
     r"was trained with preprocessing \[\] \(this config: \[\{'name': 'shades_of_gray'\}\]\)"),
    ("data.input_size=96", r"was trained with input size 64 \(this config: 96\)"),
])
def test_export_and_evaluate_refuse_other_pixels_than_the_models_learnt(run, tmp_path, override, reason):
    config = run(override, f"export.out_dir={tmp_path / 'wrong'}")
    with pytest.raises(SystemExit, match=reason):
        export_bundle(config)
    with pytest.raises(SystemExit, match=reason):
        evaluate(config)
    assert not (tmp_path / "wrong").exists()


def test_export_refuses_a_segmenter_retrained_after_the_classifier(run, tmp_path):
    config = run(f"export.out_dir={tmp_path / 'mixed'}")
    retrain_segmenter(config)
    with pytest.raises(SystemExit, match=r"learnt from the masks of segmenter sha256 \w{12}, but .* is \w{12} "
                                         r"\(retrained since\): retrain the classifier"):
        export_bundle(config)
    with pytest.raises(SystemExit, match="retrained since"):
        evaluate(config)
    assert not (tmp_path / "mixed").exists()


def test_an_evaluation_measured_with_another_segmenter_is_not_exported(run):
    config = run()
    report_path = eval_dir(config) / "evaluation.json"
    report = json.loads(report_path.read_text())
    assert report["segmenter"]["sha256"] == sha256_file(segmenter_checkpoint(config))
    report["segmenter"]["sha256"] = "0" * 64
    report_path.write_text(json.dumps(report))
    with pytest.raises(EvaluationMismatch, match=r"measured with the masks of segmenter sha256 000000000000, but "
                                                 r".* is another checkpoint now"):
        _evaluation(config, config.classifier_dir / "best.pt")


def test_a_second_stage_must_see_the_pixels_the_first_learnt(run):
    config = run("classifier.stage_dir=stage2", "classifier.optim.epochs=1",
                 "data.preprocessing=[{name: shades_of_gray}]")
    config = replace(config, classifier=replace(config.classifier, init_from=str(config.out / "classifier" / "last.pt")))
    # The segmenter is checked first (its masks would be predicted from these other pixels).
    with pytest.raises(SystemExit, match="the segmenter .* was trained with preprocessing"):
        train_classifier(config)
    assert not (config.out / "stage2" / "last.pt").exists()


def test_resume_refuses_other_settings_and_keeps_the_run_files(run):
    config = run("classifier.optim.lr=0.01")
    run_files = (config.classifier_dir / "config.yaml").read_bytes()
    with pytest.raises(SystemExit, match=r"was trained with other settings: classifier.optim.lr \(0.003 -> 0.01\)\. "
                                         r"Resume with the settings the run started with"):
        train_classifier(config, resume=True)
    assert (config.classifier_dir / "config.yaml").read_bytes() == run_files


def test_resume_may_lengthen_a_run(run):
    config = run("classifier.optim.epochs=26")
    train_classifier(config, resume=True)
    history = (config.classifier_dir / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["epoch"] == 26


def test_resume_with_nothing_to_resume_says_so(tmp_path, capsys):
    check_resume(tmp_path / "last.pt", {"seed": 0}, None)
    assert f"--resume: no {tmp_path / 'last.pt'} yet: starting from epoch 1" in capsys.readouterr().out


def test_checkpoints_from_before_settings_were_recorded_resume_as_before(tmp_path):
    check_resume(tmp_path / "last.pt", {"seed": 1}, {"model": {}})  # no settings recorded: nothing to compare


def test_changed_settings_names_each_difference_by_its_dotted_path():
    config = load_config(None, [])
    other = load_config(None, ["seed=3", "classifier.optim.lr=0.5", "classifier.model.heads=2", "data.workers=0"])
    assert changed_settings(stage_settings(config, "classifier"), stage_settings(other, "classifier")) == [
        "classifier.model.heads", "classifier.optim.lr", "data.workers", "seed"]
