"""`make starter-bundle`: the release check runs first, in seconds, before hours of training.

Read from make's own dry run (`make -n` prints the recipe without running it) so the test
follows the Makefile as written; nothing here trains or exports.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ..conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(*args: str) -> subprocess.CompletedProcess:
    # INSTALLED=Makefile: the virtual environment's stamp is not this test's business.
    return subprocess.run(["make", "--no-print-directory", "starter-bundle", "INSTALLED=Makefile", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def _steps(dry_run: str) -> list[str]:
    return [line for line in dry_run.splitlines() if " -m training " in line or "starter_report" in line]


def test_a_release_build_checks_the_tree_first_and_exports_as_a_release():
    run = _make("-n")
    assert run.returncode == 0, run.stderr
    steps = _steps(run.stdout)
    assert "export" in steps[0] and "--check-release" in steps[0]
    assert "training prepare" in steps[1]  # before any training
    export = next(step for step in steps if "--force" in step)
    assert export.split("#")[0].split()[-1] == "--release"


def test_an_experiment_build_skips_the_check_and_exports_without_release():
    run = _make("-n", "STARTER_RELEASE=")
    assert run.returncode == 0, run.stderr
    export = next(step for step in _steps(run.stdout) if "--force" in step)
    assert "--release" not in export
    check = next(step for step in _steps(run.stdout) if "--check-release" in step)
    assert check.startswith('test -z ""')  # the check line stands down


def test_a_mistyped_release_setting_stops_before_anything_runs():
    run = _make("STARTER_RELEASE=--relaese")
    assert run.returncode != 0
    assert "error: STARTER_RELEASE is --release or empty" in run.stderr
    assert "training" not in run.stdout  # nothing else was started
