"""A derived bundle evaluates its parent's results whichever way they name the parent.

Since 2026-11-30 a bundle's identity is the digest of its manifest file's content; before, it was
the digest of every field rendered (``Manifest.legacy_identity``). For a parent whose file lacks
some field the two differ, and its results name it one way or the other. ``screen calibrate`` now
records both; a bundle calibrated before recorded one, and its parent is then looked for on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from synthetic import Synthetic, write_synthetic

from screening.cli import cli
from screening.manifest import load_manifest


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def older_parent(tmp_path: Path, tiny_bundle: Path) -> Path:
    """engines/tiny as an older export wrote it: no `tta`, no `requires` in the file, so that its
    identity (file content) and its legacy identity (every field rendered) differ."""
    parent = tmp_path / "engines" / "tiny"
    shutil.copytree(tiny_bundle, parent)
    data = json.loads((parent / "manifest.json").read_text())
    (parent / "manifest.json").write_text(json.dumps({k: v for k, v in data.items() if k not in ("tta", "requires")}))
    loaded = load_manifest(parent)
    assert loaded.identity != loaded.legacy_identity
    return parent


def naming(data: Synthetic, identity: str, name: str) -> Path:
    """A copy of the synthetic results whose rows name the bundle ``identity`` (no journal)."""
    path = data.results.with_name(name)
    path.write_text(data.results.read_text(encoding="utf-8-sig").replace(data.manifest.identity, identity),
                    encoding="utf-8-sig")
    return path


def calibrated(data: Synthetic, parent: Path, out: Path) -> Path:
    result = run("calibrate", "--bundle", parent, "--results", data.results, "--labels", data.labels,
                 "--out", out, "--name", "clinic", "--bootstrap", 0, "--sensitivity", "0.9")
    assert result.exit_code == 0, result.output
    return out


def as_calibrated_earlier(derived: Path, from_identity: str) -> None:
    """Rewrite ``derived`` as calibrate wrote it before both identities were recorded."""
    data = json.loads((derived / "manifest.json").read_text())
    data["derived"].pop("from_legacy_identity")
    data["derived"]["from_identity"] = from_identity
    (derived / "manifest.json").write_text(json.dumps(data))


def evaluate(results: Path, bundle: Path, out: Path):
    return run("evaluate", results, "--labels", results.with_name("labels.csv"), "--bundle", bundle,
               "--out", out, "--bootstrap", 0, "--quiet")


def test_calibrate_records_both_identities_and_either_is_accepted_without_the_parent(older_parent, tmp_path):
    data = write_synthetic(tmp_path / "run", older_parent, n=120)
    parent = load_manifest(older_parent)
    derived = calibrated(data, older_parent, tmp_path / "engines" / "tiny-clinic")
    recorded = load_manifest(derived).derived
    assert recorded["from_identity"] == parent.identity
    assert recorded["from_legacy_identity"] == parent.legacy_identity
    shutil.rmtree(older_parent)  # the record alone is enough
    for name, identity in (("new.csv", parent.identity), ("legacy.csv", parent.legacy_identity)):
        result = evaluate(naming(data, identity, name), derived, tmp_path / f"ev-{name}")
        assert result.exit_code == 0, result.output


def test_a_bundle_calibrated_before_the_change_evaluates_results_naming_its_parent_the_new_way(older_parent, tmp_path):
    data = write_synthetic(tmp_path / "run", older_parent, n=120)
    parent = load_manifest(older_parent)
    derived = calibrated(data, older_parent, tmp_path / "engines" / "tiny-clinic")
    as_calibrated_earlier(derived, parent.legacy_identity)  # what calibrate recorded before 2026-11-30
    results = naming(data, parent.identity, "tonight.csv")
    # The legacy-named results it was calibrated on still are its parent's.
    assert evaluate(naming(data, parent.legacy_identity, "then.csv"), derived, tmp_path / "ev0").exit_code == 0
    # The parent beside it proves that tonight's name is the same bundle's.
    result = evaluate(results, derived, tmp_path / "ev1")
    assert result.exit_code == 0, result.output
    # Without the parent nothing proves it: refused, saying what would.
    shutil.move(older_parent, tmp_path / "elsewhere")
    result = evaluate(results, derived, tmp_path / "ev2")
    assert result.exit_code == 2
    assert (f"Error: the results were screened with {parent.identity}, but tiny@1.0+local.clinic was calibrated "
            f"from {parent.legacy_identity}: an edited tiny@1.0, or the same one named as screen named it before "
            f"or since 2026-11-30 (to tell, keep tiny@1.0's folder beside") in result.output
    # ... or the summary of the run that screened them names where the parent is.
    (tmp_path / "run" / "tonight.summary.json").write_text(json.dumps({"inputs": {
        "bundle_dir": str(tmp_path / "elsewhere")}}))
    result = evaluate(results, derived, tmp_path / "ev3")
    assert result.exit_code == 0, result.output


def test_a_bundle_calibrated_on_the_day_of_the_change_evaluates_legacy_named_results(older_parent, tmp_path):
    data = write_synthetic(tmp_path / "run", older_parent, n=120)
    parent = load_manifest(older_parent)
    derived = calibrated(data, older_parent, tmp_path / "engines" / "tiny-clinic")
    as_calibrated_earlier(derived, parent.identity)  # calibrate on 2026-11-30 recorded only the new one
    result = evaluate(naming(data, parent.legacy_identity, "old.csv"), derived, tmp_path / "ev")
    assert result.exit_code == 0, result.output


def test_an_edited_parent_is_not_the_parent_either_way(older_parent, tmp_path):
    data = write_synthetic(tmp_path / "run", older_parent, n=120)
    parent = load_manifest(older_parent)
    derived = calibrated(data, older_parent, tmp_path / "engines" / "tiny-clinic")
    as_calibrated_earlier(derived, parent.legacy_identity)
    # The parent on disk edited since (another temperature): its identities match nothing recorded.
    manifest = json.loads((older_parent / "manifest.json").read_text())
    (older_parent / "manifest.json").write_text(json.dumps({**manifest, "temperature": 2.0}))
    edited = load_manifest(older_parent).identity
    result = evaluate(naming(data, edited, "edited.csv"), derived, tmp_path / "ev")
    assert result.exit_code == 2
    assert f"the results were screened with {edited}, but tiny@1.0+local.clinic was calibrated from" in result.output
    unrelated = evaluate(naming(data, "other@2.0+0123abcd", "other.csv"), derived, tmp_path / "ev2")
    assert unrelated.exit_code == 2
    assert "not with tiny@1.0+local.clinic or its parent tiny@1.0: pass that bundle's folder" in unrelated.output
