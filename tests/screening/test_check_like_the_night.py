"""`screen folder --check` fails where the night would, with the same exit code and message, and
writes nothing; --ray with --save-masks is refused before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from folder_runner import screen
from screening import backends
from screening.journal import journal_path


pytestmark = pytest.mark.usefixtures("no_default_bundle")


@pytest.fixture(autouse=True)
def in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths (--report r.txt) land here


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT unusable here, whatever this machine has (the run and --check share the probe)."""
    monkeypatch.setattr(backends, "probe_tensorrt",
                        lambda bundle_dir, manifest, stall_s=None: backends.Probe(False, "no GPU (test)"))


# Each case: the options, and the words of the run's own refusal.
CASES = {
    "out in a missing folder": (lambda t, images, meta: ["--out", t / "nonexistent" / "r.csv"], 2,
                                "folder of --out"),
    "out inside the images": (lambda t, images, meta: ["--out", images / "r.csv"], 2, "is inside the images folder"),
    "out is the metadata CSV": (lambda t, images, meta: ["--out", meta], 2, "is the metadata CSV"),
    "tensorrt unavailable": (lambda t, images, meta: ["--backend", "tensorrt"], 4, "no GPU (test)"),
    "batch size 0": (lambda t, images, meta: ["--batch-size", 0], 2, "--batch-size must be at least 1"),
    "report not html": (lambda t, images, meta: ["--report", "r.txt"], 2, "must be an .html file"),
    "ray with save-masks": (lambda t, images, meta: ["--ray", "--save-masks", t / "masks"], 2,
                            "--save-masks is not available with --ray"),
    "workers 0": (lambda t, images, meta: ["--workers", 0], 2, "--workers must be at least 1"),
    "masks inside the images": (lambda t, images, meta: ["--save-masks", images / "masks"], 2,
                                "is inside the images folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_fails_where_the_night_would(tmp_path: Path, make_folder, tiny_bundle: Path,
                                           monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    no_tensorrt(monkeypatch)
    images, meta = make_folder(3)
    options, code, words = CASES[case]
    args = ["folder", images, "--meta", meta, "--bundle", tiny_bundle, "--workers", 2, *options(tmp_path, images, meta)]
    before = files_under(tmp_path)
    check = screen(*args, "--check")
    assert files_under(tmp_path) == before, case  # --check writes nothing
    night = screen(*args)
    assert night.exit_code == code and words in night.stderr, night.output
    assert check.exit_code == code and words in check.stderr, check.output
    assert check.stderr == night.stderr  # the same one line
    assert files_under(tmp_path) == before, case  # and the night stopped before writing anything


def test_check_names_the_backend_the_run_would_open(tmp_path: Path, make_folder, tiny_bundle: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    no_tensorrt(monkeypatch)
    images, meta = make_folder(2)
    base = ["folder", images, "--meta", meta, "--bundle", tiny_bundle, "--check"]
    before = files_under(tmp_path)
    auto = screen(*base)
    assert auto.exit_code == 0, auto.output
    lines = auto.stdout.splitlines()
    backend = lines.index("backend: onnxruntime (auto picked onnxruntime: no GPU (test))")
    assert lines[backend + 1].startswith("bundle: tiny@1.0+")
    chosen = screen(*base, "--backend", "onnxruntime")
    assert "backend: onnxruntime (onnxruntime requested)" in chosen.stdout.splitlines()
    try:
        import ray  # noqa: F401  (an optional extra)
    except ImportError:
        pass  # without Ray the --ray check exits 4, as the run would
    else:
        ray_run = screen(*base, "--ray", "auto")  # the cluster is not contacted: nothing to start or find
        assert ray_run.exit_code == 0, ray_run.output
        assert any(line.startswith("backend: --ray auto (") for line in ray_run.stdout.splitlines())
    assert files_under(tmp_path) == before


def test_check_with_tensorrt_usable_names_it(tmp_path: Path, make_folder, tiny_bundle: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "probe_tensorrt",
                        lambda bundle_dir, manifest, stall_s=None: backends.Probe(True, "engines for this GPU (test)"))
    images, meta = make_folder(2)
    result = screen("folder", images, "--meta", meta, "--bundle", tiny_bundle, "--check", "--backend", "tensorrt")
    assert result.exit_code == 0, result.output
    assert "backend: tensorrt (tensorrt: engines for this GPU (test))" in result.stdout.splitlines()


def test_check_with_a_missing_default_bundle_still_reports_it(tmp_path: Path, make_folder) -> None:
    images, meta = make_folder(2)
    result = screen("folder", images, "--meta", meta, "--check")
    assert result.exit_code == 3
    assert "bundle: NOT usable: " in result.stdout


def test_check_with_a_broken_bundle_and_tensorrt_asked_for_is_exit_3_as_the_run(
        tmp_path: Path, make_folder, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run loads the manifest before it opens the backend: a bundle problem wins, as there."""
    no_tensorrt(monkeypatch)
    images, meta = make_folder(2)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "classifier.onnx").write_bytes(b"tampered")
    args = ["folder", images, "--meta", meta, "--bundle", broken, "--backend", "tensorrt"]
    assert screen(*args).exit_code == 3
    check = screen(*args, "--check")
    assert check.exit_code == 3 and "bundle: NOT usable: " in check.stdout


def test_ray_with_save_masks_leaves_no_journal_to_block_the_next_plain_run(
        tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    args = ["folder", images, "--meta", meta, "--out", out, "--bundle", tiny_bundle, "--backend", "onnxruntime",
            "--workers", 2]
    refused = screen(*args, "--ray", "--save-masks", tmp_path / "masks")
    assert refused.exit_code == 2, refused.output
    assert "--save-masks is not available with --ray" in refused.stderr
    assert not journal_path(out).exists() and not out.exists() and not (tmp_path / "masks").exists()
    plain = screen(*args, "--save-masks", tmp_path / "masks")
    assert plain.exit_code == 0, plain.output


def test_folder_help_exit_code_3_names_the_broken_night() -> None:
    help_text = " ".join(screen("folder", "--help").output.split())
    assert "3 model bundle missing, malformed or modified, or it failed in the models on every image" in help_text
