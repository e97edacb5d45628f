"""`screen bundle list|info|verify`: what is installed, what its card says, whether it is whole."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from folder_runner import screen as run
from screening.manifest import load_manifest, save_manifest


def test_list_info_and_verify(tmp_path: Path, tiny_bundle: Path):
    engines = tmp_path / "engines"
    shutil.copytree(tiny_bundle, engines / "tiny")
    points = [{"name": "sens95", "target_sensitivity": 0.95, "threshold": 0.25, "sensitivity": 0.95,
               "specificity": 0.61, "n_malignant": 40, "n_benign": 60, "fitted_on": "validation split"}]
    card = {"intended_use": "triage support for dermoscopy images; not for diagnosis"}
    save_manifest(replace(load_manifest(engines / "tiny"), operating_points=points, card=card), engines / "tiny")
    (engines / "broken").mkdir()
    (engines / "broken" / "manifest.json").write_text("[]")
    listed = run("bundle", "list", engines)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert any("tiny@1.0" in line and "sens95" in line for line in lines)
    assert any("broken" in line and "BROKEN" in line for line in lines)
    info = run("bundle", "info", engines / "tiny")
    assert info.exit_code == 0, info.output
    assert "intended_use: triage support for dermoscopy images; not for diagnosis" in info.output
    assert ("operating point sens95 (default): risk >= 0.2500, sensitivity 0.950, specificity 0.610 on "
            "40 malignant / 60 benign (validation split)") in info.output
    verified = run("bundle", "verify", engines / "tiny")
    assert verified.exit_code == 0 and "model files match their sha256" in verified.output
    (engines / "tiny" / "classifier.onnx").write_bytes(b"tampered")
    tampered = run("bundle", "verify", engines / "tiny")
    assert tampered.exit_code == 3
    assert "classifier.onnx does not match its manifest sha256" in tampered.output


def test_info_of_a_bundle_whose_training_evaluation_is_not_an_object(tmp_path: Path, tiny_bundle: Path):
    """training is free-form provenance: an 'evaluation' written as a text or a list (a hand-edited
    card, another exporter) made `screen bundle info` an AttributeError traceback."""
    for value in ("see the model card", [0.9, 0.8]):
        folder = tmp_path / type(value).__name__
        shutil.copytree(tiny_bundle, folder)
        manifest = load_manifest(folder)
        save_manifest(replace(manifest, training={**manifest.training, "evaluation": value}), folder)
        info = run("bundle", "info", folder)
        assert info.exit_code == 0, (info.output, info.exception)
        assert "tiny@1.0" in info.output and "evaluation (" not in info.output
