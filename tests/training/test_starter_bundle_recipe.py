"""`make starter-bundle`: the release check runs first, in seconds, before hours of training.

Read from make's own dry run (`make -n` prints the recipe without running it) so the test
follows the Makefile as written; nothing here trains or exports.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ..conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(*args: str) -> subprocess.CompletedProcess:
    # -o: take the virtual environment's stamp as up to date, so that make installs nothing (a
    # dry run still runs the rules that remake a makefile). The outer make's flags stay out:
    # `make test STARTER_RELEASE=` must not reach this make.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env.pop("STARTER_RELEASE", None)
    return subprocess.run(["make", "--no-print-directory", "starter-bundle", "VENV=.venv", "-o", ".venv/.installed",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)


def _steps(dry_run: str) -> list[str]:
    """Each command of the recipe on one line (make -n keeps a recipe's backslash-newlines)."""
    lines = dry_run.replace("\\\n", " ").splitlines()
    return [line for line in lines if " -m training " in line or "starter_report" in line]


def _installing(steps: list[str]) -> str:
    """The step that writes engines/starter: joining the two members' bundles."""
    return next(step for step in steps if "training join" in step and "--out engines/starter" in step)


def test_a_release_build_checks_the_tree_first_and_exports_as_a_release():
    run = _make("-n")
    assert run.returncode == 0, run.stderr
    steps = _steps(run.stdout)
    assert "export" in steps[0] and "--check-release" in steps[0]
    assert "training prepare" in steps[1]  # before any training
    assert _installing(steps).split("#")[0].split()[-1] == "--release"
    # the members are intermediate bundles under runs/, not releases
    members = [step for step in steps if "training export" in step and "--check-release" not in step]
    assert len(members) == 2 and all("--release" not in step for step in members)


def test_an_experiment_build_skips_the_check_and_exports_without_release():
    run = _make("-n", "STARTER_RELEASE=")
    assert run.returncode == 0, run.stderr
    assert "--release" not in _installing(_steps(run.stdout))
    check = next(step for step in _steps(run.stdout) if "--check-release" in step)
    assert check.startswith('test -z ""')  # the check line stands down


def test_a_mistyped_release_setting_stops_before_anything_runs():
    # A dry run prints every step make would take, the install included: here it must print none,
    # because make stops while reading the Makefile.
    run = _make("-n", "STARTER_RELEASE=--relaese")
    assert run.returncode != 0
    assert 'STARTER_RELEASE is --release or empty, not "--relaese"' in run.stderr
    assert run.stdout == ""
