"""Bundle lifecycle on the training side: export never replaces without --force, gates, card, run folders."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from ..conftest import tiny_overrides
from screening.bundle_store import BundleExists
from screening.manifest import load_manifest
from training import export as export_module
from training.card import data_sha256
from training.common import config_argument_parser, config_from_args
from training.config import load_config
from training.evaluate import eval_dir
from training.export import EvaluationMismatch, ReleaseError, _evaluation, export_bundle
from training.gates import GateError, check_gates, parse_gate


def test_export_never_replaces_a_bundle_without_force(trained_tiny):
    bundle = trained_tiny.out / "bundle"
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(BundleExists, match="already exists: choose another folder, or pass --force"):
        export_bundle(trained_tiny)
    other_folder = replace(trained_tiny, export=replace(trained_tiny.export, out_dir=str(trained_tiny.out / "copy")))
    with pytest.raises(BundleExists, match=r"already holds bundle tiny@0.0.1: bump the version"):
        export_bundle(other_folder)
    assert (bundle / "manifest.json").read_bytes() == before
    assert not (trained_tiny.out / "copy").exists()


def test_forced_export_swaps_in_a_complete_bundle(trained_tiny):
    bundle = trained_tiny.out / "bundle"
    export_bundle(trained_tiny, force=True, require=("malignant_auc>=0.0",))
    manifest = load_manifest(bundle)  # whole: every sha256 matches
    assert manifest.training["quality_gates"][0].startswith("malignant_auc ")
    assert sorted(p.name for p in bundle.parent.iterdir() if p.name.startswith(".bundle")) == []


def test_quality_gates_refuse_before_anything_is_written(trained_tiny, tmp_path):
    moved = replace(trained_tiny, export=replace(trained_tiny.export, out_dir=str(tmp_path / "gated"),
                                                  version="9.9.9"))
    with pytest.raises(GateError, match=r"quality gate failed: malignant_auc is [01]\.\d{4}, required >= 1.01"):
        export_bundle(moved, require=("malignant_auc>=1.01",))
    assert not (tmp_path / "gated").exists()


def test_release_needs_a_clean_tree(trained_tiny, tmp_path, monkeypatch):
    moved = replace(trained_tiny, export=replace(trained_tiny.export, out_dir=str(tmp_path / "rel"), version="9.9.8"))
    monkeypatch.setattr(export_module, "git_state", lambda root, exclude=None: {
        "commit": "0123456789abcdef", "clean": False, "modified": ["training/export.py"], "modified_count": 1})
    with pytest.raises(ReleaseError, match="a release bundle needs a clean git commit: 1 tracked files differ"):
        export_bundle(moved, release=True)
    assert not (tmp_path / "rel").exists()


def test_a_release_manifest_names_its_commit_without_dirty(trained_tiny, tmp_path, monkeypatch):
    # Clean apart from the bundle folder being replaced: the manifest must not say +dirty anywhere.
    monkeypatch.setattr(export_module, "git_state", lambda root, exclude=None: {
        "commit": "0123456789abcdef", "clean": True, "modified": [], "modified_count": 0})
    moved = replace(trained_tiny, export=replace(trained_tiny.export, out_dir=str(tmp_path / "rel"), version="9.9.7"))
    manifest = load_manifest(export_bundle(moved, release=True))
    assert manifest.training["git_commit"] == "0123456789abcdef"
    assert manifest.training["git"]["clean"] and manifest.training["release"] is True


def _git_repo(root: Path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                       cwd=root, check=True, capture_output=True)

    (root / "engines" / "starter").mkdir(parents=True)
    (root / "engines" / "starter" / "manifest.json").write_text("{}")
    (root / "engines" / "starter" / "helper.py").write_text("x = 1\n")
    (root / "engines" / "starter-old.txt").write_text("a sibling, not inside the bundle")
    (root / "train.py").write_text("lr = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    return git


def test_release_ignores_only_the_bundle_being_replaced(tmp_path):
    from training.card import commit_label, git_state

    _git_repo(tmp_path)
    sha = git_state(tmp_path)["commit"]
    assert len(sha) == 40 and commit_label(git_state(tmp_path)) == sha
    bundle = tmp_path / "engines" / "starter"
    (bundle / "manifest.json").write_text('{"rebuilt": true}')
    assert git_state(tmp_path, exclude=bundle)["clean"]
    assert not git_state(tmp_path)["clean"]
    # Checkpoints' provenance labels the whole tree: a rebuilt bundle in it is a modified file.
    assert commit_label(git_state(tmp_path)) == sha + "+dirty"
    assert commit_label({"commit": "unknown", "clean": False}) == "unknown"  # no checkout, or no git
    (tmp_path / "engines" / "starter-old.txt").write_text("changed")
    (tmp_path / "train.py").write_text("lr = 2\n")
    state = git_state(tmp_path, exclude=bundle)
    assert not state["clean"] and state["modified"] == ["engines/starter-old.txt", "train.py"]


def test_release_sees_a_file_moved_out_of_the_bundle_and_a_staged_change(tmp_path):
    from training.card import git_state

    git = _git_repo(tmp_path)
    bundle = tmp_path / "engines" / "starter"
    git("mv", "engines/starter/helper.py", "helper.py")  # a rename: "R  old -> new" without --no-renames
    assert git_state(tmp_path, exclude=bundle)["modified"] == ["helper.py"]
    git("mv", "helper.py", "engines/starter/helper.py")
    assert git_state(tmp_path, exclude=bundle)["clean"]
    # Staged, then the file put back: the working tree matches HEAD, the index does not.
    (tmp_path / "train.py").write_text("lr = 3\n")
    git("add", "train.py")
    (tmp_path / "train.py").write_text("lr = 1\n")
    assert git_state(tmp_path, exclude=bundle)["modified"] == ["train.py"]


def test_check_release_answers_in_seconds_without_exporting(trained_tiny, tmp_path, monkeypatch, capsys):
    from training.export import main

    dirty = {"commit": "0123456789abcdef", "clean": False, "modified": ["configs/x.yaml"], "modified_count": 1}
    seen = {}

    def state(root, exclude=None):
        seen["exclude"] = exclude
        return dirty

    monkeypatch.setattr(export_module, "git_state", state)
    overrides = [a for o in tiny_overrides(trained_tiny.out) for a in ("--set", o)]
    out = tmp_path / "never"
    with pytest.raises(SystemExit, match=r"error: a release bundle needs a clean git commit: 1 tracked files "
                                         r"differ from 0123456789ab \(configs/x.yaml\)"):
        main(overrides + ["--set", f"export.out_dir={out}", "--check-release"])
    assert seen["exclude"] == out and not out.exists()
    monkeypatch.setattr(export_module, "git_state", lambda root, exclude=None: {**dirty, "clean": True,
                                                                                 "modified": [], "modified_count": 0})
    assert main(overrides + ["--set", f"export.out_dir={out}", "--check-release"]) == 0
    assert "release check passed: tracked files match commit 0123456789ab" in capsys.readouterr().out
    assert not out.exists()


def test_manifest_carries_a_model_card(trained_tiny):
    manifest = load_manifest(trained_tiny.out / "bundle")
    card = manifest.card
    assert "Not a medical device" in card["intended_use"]
    assert card["class_definitions"]["mel"]["malignant"] is True
    assert card["population"]["images"] > 0 and card["population"]["per_class"]
    assert "onnxruntime" in card["package_versions"] and "torch" in card["package_versions"]
    assert any("screen evaluate" in text for text in card["limitations"])
    assert set(manifest.training["git"]) == {"commit", "clean", "modified", "modified_count"}


def test_gates_parse_and_look_in_segmentation():
    assert parse_gate("dice>=0.85") == ("dice", ">=", 0.85)
    with pytest.raises(GateError, match="expected FIGURE>=NUMBER"):
        parse_gate("dice=0.85")
    evaluation = {"malignant_auc": 0.91, "segmentation": {"dice": 0.9}}
    assert check_gates(["malignant_auc>=0.90", "dice>=0.85"], evaluation) == [
        "malignant_auc 0.9100 >= 0.9", "dice 0.9000 >= 0.85"]
    with pytest.raises(GateError, match="iou was not measured"):
        check_gates(["iou>=0.5"], evaluation)


def test_data_hash_ignores_where_the_files_are(tmp_path):
    def index(path: Path, root: str, label: str = "mel") -> Path:
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image_id", "image_path", "mask_path", "label", "split"])
            writer.writerow(["ISIC_1", f"{root}/images/ISIC_1.jpg", f"{root}/masks/ISIC_1.png", label, "train"])
        return path

    here = data_sha256(index(tmp_path / "a.csv", "/work/shared/data/ham10000_dev"))
    assert here == data_sha256(index(tmp_path / "b.csv", "../../data/ham"))
    assert here != data_sha256(index(tmp_path / "c.csv", "/work/shared/data/ham10000_dev", label="nv"))


def test_run_name_gives_a_folder_per_run_and_none_keeps_out_dir(capsys):
    parser = config_argument_parser("segmenter", "test")
    assert str(config_from_args(parser.parse_args(["--set", "out_dir=runs/x"])).out) == "runs/x"
    named = config_from_args(parser.parse_args(["--set", "out_dir=runs/x", "--run-name", "try2"]))
    assert str(named.out) == "runs/x/try2"
    stamped = config_from_args(parser.parse_args(["--set", "out_dir=runs/x", "--run-name"]))
    assert str(stamped.out).startswith("runs/x/20") and str(stamped.out).endswith("Z")
    assert "pass --run-name" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="must be a plain folder name"):
        config_from_args(parser.parse_args(["--run-name", "../elsewhere"]))


@pytest.mark.parametrize("record", ["not a record", {"path": "best.pt"}, {"sha256": "0" * 64}])
def test_an_unreadable_checkpoint_record_is_refused_with_a_message(tmp_path, record):
    config = load_config(None, tiny_overrides(tmp_path))
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    eval_dir(config).mkdir(parents=True)
    (eval_dir(config) / "evaluation.json").write_text(json.dumps({"temperature": 1.2, "checkpoint": record}))
    with pytest.raises(EvaluationMismatch, match="run `python -m training evaluate` with this config first"):
        _evaluation(config, checkpoint)


def test_a_release_refuses_an_evaluation_that_does_not_name_its_checkpoint(tmp_path, capsys):
    config = load_config(None, tiny_overrides(tmp_path))
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    eval_dir(config).mkdir(parents=True)
    (eval_dir(config) / "evaluation.json").write_text(json.dumps({"temperature": 1.2}))  # before records
    assert _evaluation(config, checkpoint)["temperature"] == 1.2  # an experiment: warned, used
    assert "does not say which checkpoint it evaluated" in capsys.readouterr().out
    with pytest.raises(ReleaseError, match="does not say which checkpoint it evaluated .*: run `python -m "
                                           "training evaluate` with this config first"):
        _evaluation(config, checkpoint, release=True)


def test_a_checkpoints_provenance_labels_a_modified_tree_dirty(tmp_path, monkeypatch):
    from training import common

    config = load_config(None, tiny_overrides(tmp_path))
    monkeypatch.setattr(common, "git_state", lambda root, exclude=None: {
        "commit": "0123456789abcdef", "clean": False, "modified": ["train.py"], "modified_count": 1})
    assert common.provenance(config)["git_commit"] == "0123456789abcdef+dirty"
    monkeypatch.setattr(common, "git_state", lambda root, exclude=None: {
        "commit": "0123456789abcdef", "clean": True, "modified": [], "modified_count": 0})
    assert common.provenance(config)["git_commit"] == "0123456789abcdef"


def test_an_evaluation_in_the_old_shared_folder_is_named_not_used(tmp_path, capsys):
    config = load_config(None, tiny_overrides(tmp_path))
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    (config.out / "eval").mkdir(parents=True)  # where every stage evaluated before
    (config.out / "eval" / "evaluation.json").write_text(json.dumps({"temperature": 1.2}))
    assert _evaluation(config, checkpoint) == {}
    assert "from before each stage had its own eval folder" in capsys.readouterr().out
    with pytest.raises(ReleaseError, match=r"classifier/eval/evaluation.json not found: .* evaluate` with this "
                                           r"config first \(the report in .*eval is from before"):
        _evaluation(config, checkpoint, release=True)
