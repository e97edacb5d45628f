"""Installing a bundle: never over an existing one without force, atomic swap with it, nothing half-built."""

from __future__ import annotations

import os
import re
import stat
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from screening.bundle_store import BundleExists, find_bundles, install_bundle
from screening.errors import BundleError
from screening.manifest import load_manifest, save_manifest


def builder(source: Path, version: str):
    def build(folder: Path) -> None:
        manifest = load_manifest(source)
        for spec in (manifest.segmenter, manifest.classifier):
            shutil.copy2(source / spec.file, folder / spec.file)
        save_manifest(replace(manifest, version=version), folder)
    return build


def test_new_bundle_is_installed_and_an_existing_one_needs_force(tmp_path, tiny_bundle):
    dest = tmp_path / "engines" / "tiny"
    install_bundle(builder(tiny_bundle, "2.0"), dest, "tiny@2.0")
    assert load_manifest(dest).version == "2.0"
    with pytest.raises(BundleExists, match="already exists"):
        install_bundle(builder(tiny_bundle, "3.0"), dest, "tiny@3.0")
    assert load_manifest(dest).version == "2.0"
    install_bundle(builder(tiny_bundle, "3.0"), dest, "tiny@3.0", force=True)
    assert load_manifest(dest).version == "3.0"
    assert [p.name for p in dest.parent.iterdir()] == ["tiny"]  # the old bundle and temp folders are gone


def test_same_name_and_version_in_another_folder_needs_force(tmp_path, tiny_bundle):
    install_bundle(builder(tiny_bundle, "2.0"), tmp_path / "a", "tiny@2.0")
    with pytest.raises(BundleExists, match=r"already holds bundle tiny@2.0: bump the version"):
        install_bundle(builder(tiny_bundle, "2.0"), tmp_path / "b", "tiny@2.0")


def test_a_failed_build_leaves_the_old_bundle_and_no_temp_folder(tmp_path, tiny_bundle):
    dest = tmp_path / "tiny"
    install_bundle(builder(tiny_bundle, "2.0"), dest, "tiny@2.0")

    def broken(folder: Path) -> None:
        builder(tiny_bundle, "3.0")(folder)
        (folder / "classifier.onnx").write_bytes(b"truncated")

    with pytest.raises(BundleError, match="does not match its manifest sha256"):
        install_bundle(broken, dest, "tiny@3.0", force=True)
    assert load_manifest(dest).version == "2.0"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_find_bundles_reports_broken_ones(tmp_path, tiny_bundle):
    install_bundle(builder(tiny_bundle, "2.0"), tmp_path / "good", "tiny@2.0")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{}")
    found = {b.path.name: b for b in find_bundles([tmp_path])}
    assert found["good"].manifest.tag == "tiny@2.0"
    assert found["bad"].manifest is None and re.search("schema.version", found["bad"].problem)


def test_staged_bundle_installs_on_success_and_cleans_up_on_failure(tmp_path, tiny_bundle):
    from screening.bundle_store import staged_bundle

    dest = tmp_path / "tiny"
    with pytest.raises(RuntimeError, match="export failed"):
        with staged_bundle(dest, "tiny@4.0") as folder:
            builder(tiny_bundle, "4.0")(folder)
            raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []
    with staged_bundle(dest, "tiny@4.0") as folder:
        builder(tiny_bundle, "4.0")(folder)
    assert load_manifest(dest).tag == "tiny@4.0"


def test_an_installed_bundle_folder_is_readable_by_the_clinics_other_accounts(tmp_path, tiny_bundle):
    old = os.umask(0o022)
    try:
        dest = tmp_path / "engines" / "tiny"
        install_bundle(builder(tiny_bundle, "2.0"), dest, "tiny@2.0")
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755  # as mkdir gives, not the temp folder's 0700
