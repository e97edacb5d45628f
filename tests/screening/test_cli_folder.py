"""Tests for `screen folder` through Click's CliRunner: messages, exit codes, rows, ranking."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from decimal import Decimal
from functools import partial
from pathlib import Path

import click
import cv2
import numpy as np
import pytest
from click.testing import Result

from bundle_factory import lesion_rgb, patient_row, write_image, write_patients
from csv_compare import rows_without
from folder_runner import run_folder, screen
from screening.cli import cli
from screening.journal import journal_path, lock_path
from screening.manifest import load_manifest, sha256_file


pytestmark = pytest.mark.usefixtures("no_default_bundle")


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


run = partial(run_folder, batch_size=3, workers=2)


def only_stderr_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- unusable inputs: one line, documented exit code, nothing written -----------------------------

def assert_nothing_written(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    assert not out.exists() and not journal_path(out).exists() and not lock_path(out).exists()


def test_csv_without_key_column(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, _ = make_folder(2)
    meta = write_patients(tmp_path / "p.csv", [{"patient": "P1", "Age": 40, "sex": "f"}])
    result = run(images, meta, tmp_path / "results.csv", tiny_bundle)
    assert result.exit_code == 2
    assert only_stderr_line(result) == (f"Error: metadata CSV {meta} has no image column: expected one of "
                                        f"image, image_id, image_name, isic_id; found: patient, Age, sex")
    assert_nothing_written(tmp_path)


def test_missing_csv(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, _ = make_folder(2)
    result = run(images, tmp_path / "nope.csv", tmp_path / "results.csv", tiny_bundle)
    assert result.exit_code == 2
    assert only_stderr_line(result) == f"Error: metadata file not found: {tmp_path / 'nope.csv'}"
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("content, problem", [
    (b"", "the file is empty"),
    (b"PK\x03\x04\x00\x00binary xlsx", "it contains binary data, not text (save the sheet as CSV)"),
])
def test_unreadable_csv(tmp_path: Path, make_folder, tiny_bundle: Path, content: bytes, problem: str) -> None:
    images, _ = make_folder(2)
    meta = tmp_path / "p.csv"
    meta.write_bytes(content)
    result = run(images, meta, tmp_path / "results.csv", tiny_bundle)
    assert result.exit_code == 2
    assert only_stderr_line(result) == f"Error: cannot read metadata CSV {meta}: {problem}"
    assert_nothing_written(tmp_path)


def test_missing_images_folder(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    _, meta = make_folder(1)
    result = run(tmp_path / "nowhere", meta, tmp_path / "results.csv", tiny_bundle)
    assert result.exit_code == 2
    assert only_stderr_line(result) == f"Error: images folder not found: {tmp_path / 'nowhere'}"


def test_bad_options(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    result = run(images, meta, tmp_path / "results.csv", tiny_bundle, "--batch-size", 0)
    assert (result.exit_code, only_stderr_line(result)) == (2, "Error: --batch-size must be at least 1, got 0")
    result = run(images, meta, tmp_path / "missing" / "results.csv", tiny_bundle)
    assert result.exit_code == 2
    assert only_stderr_line(result) == f"Error: the folder of --out {tmp_path / 'missing' / 'results.csv'} does not exist"
    result = run(images, meta, tmp_path / "results.csv", tiny_bundle, "--save-masks", images / "masks")
    assert result.exit_code == 2
    assert only_stderr_line(result) == (f"Error: --save-masks {images / 'masks'} is inside the images folder: "
                                        f"the mask PNGs would be screened as images by the next run")
    assert_nothing_written(tmp_path)


def test_missing_bundle(tmp_path: Path, make_folder) -> None:
    images, meta = make_folder(1)
    result = run(images, meta, tmp_path / "results.csv", tmp_path / "engines" / "gone")
    assert result.exit_code == 3
    assert only_stderr_line(result) == f"Error: bundle folder {tmp_path / 'engines' / 'gone'} does not exist"
    assert_nothing_written(tmp_path)


def test_missing_default_bundle_says_how_to_get_one(tmp_path: Path, make_folder) -> None:
    images, meta = make_folder(1)
    result = screen(images, "--meta", meta, "--out", tmp_path / "results.csv")
    assert result.exit_code == 3
    assert only_stderr_line(result) == (f"Error: no model bundle at {tmp_path / 'no-such-bundle'} ($SCREEN_BUNDLE): "
                                        f"point $SCREEN_BUNDLE at a bundle folder (manifest.json, segmenter.onnx, "
                                        f"classifier.onnx), or pass --bundle PATH")


def test_without_an_installed_starter_a_pip_user_is_told_what_to_do(tmp_path: Path, make_folder,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder_cli = sys.modules["screening.cli.folder"]  # the package's `folder` is the command

    monkeypatch.delenv("SCREEN_BUNDLE")
    monkeypatch.setattr(folder_cli, "default_bundle", lambda: tmp_path / "site-packages" / "starter")
    images, meta = make_folder(1)
    result = screen(images, "--meta", meta, "--out", tmp_path / "results.csv")
    assert result.exit_code == 3
    assert only_stderr_line(result) == (
        f"Error: no model bundle: the starter bundle is not installed ({tmp_path / 'site-packages' / 'starter'} "
        f"is missing); reinstall with `pip install lesion-screening` (or `pip install .` in a checkout with "
        f"engines/starter), pass --bundle PATH, or set $SCREEN_BUNDLE=PATH")


def test_the_starter_bundle_is_found_without_a_checkout_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import screening
    from screening.bundled import STARTER

    folder_cli = sys.modules["screening.cli.folder"]

    monkeypatch.delenv("SCREEN_BUNDLE")
    monkeypatch.setattr(screening, "__file__", "/nonexistent/site-packages/screening/__init__.py")
    assert folder_cli.default_bundle() == STARTER


@pytest.mark.parametrize("typo, command", [("fodler", "folder"), ("egnines", "engines")])
def test_a_mistyped_subcommand_suggests_the_right_one(typo: str, command: str) -> None:
    result = screen(typo, "--meta", "x.csv")
    assert result.exit_code == 2
    assert f"No such command '{typo}': did you mean `{command}`?" in result.stderr


def test_an_existing_folder_named_like_a_command_is_still_screened(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fodler").mkdir()
    result = screen("fodler", "--meta", tmp_path / "missing.csv")
    # screened as a folder: it gets as far as the bundle (none here, exit 3), no "No such command"
    assert "No such command" not in result.output and result.exit_code == 3


def test_modified_bundle(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    expected = load_manifest(bundle).classifier.sha256
    with open(bundle / "classifier.onnx", "ab") as fh:
        fh.write(b"\x00")
    actual = sha256_file(bundle / "classifier.onnx")
    result = run(images, meta, tmp_path / "results.csv", bundle)
    assert result.exit_code == 3
    assert only_stderr_line(result) == (
        f"Error: {bundle / 'classifier.onnx'} does not match its manifest sha256 (expected {expected[:12]}…, "
        f"found {actual[:12]}…): the bundle was modified or is incomplete")
    assert_nothing_written(tmp_path)


def test_tensorrt_requested_without_gpu_support(tmp_path: Path, make_folder, tiny_bundle: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "screening.backends.tensorrt", None)
    images, meta = make_folder(1)
    result = screen("folder", images, "--meta", meta, "--out", tmp_path / "results.csv",
                    "--bundle", tiny_bundle, "--backend", "tensorrt")
    assert result.exit_code == 4
    assert only_stderr_line(result) == "Error: TensorRT backend not installed: pip install '.[gpu]'"
    assert_nothing_written(tmp_path)


# -- a folder of awkward files: one row per image file, each with the right status ----------------

def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    tiff = (b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 274, 3, 1, orientation, 0)
            + struct.pack("<I", 0))
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _png_header_only(width: int, height: int) -> bytes:
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(body)) + b"IHDR" + body
            + struct.pack(">I", zlib.crc32(b"IHDR" + body)))


def _encode(ext: str, pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(ext, pixels)
    assert ok
    return data.tobytes()


def _corrupt_huffman_table(jpeg: bytes) -> bytes:
    data = bytearray(jpeg)
    dht = data.find(b"\xff\xc4")
    data[dht + 5:dht + 21] = b"\xff" * 16  # impossible Huffman code counts
    return bytes(data)


@pytest.fixture
def awkward_folder(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "awkward"
    root.mkdir()
    bgr = cv2.cvtColor(lesion_rgb(1), cv2.COLOR_RGB2BGR)
    good_jpeg = _encode(".jpg", bgr)
    wide = cv2.cvtColor(cv2.resize(lesion_rgb(2), (64, 48)), cv2.COLOR_RGB2BGR)
    files = {
        "good.jpg": good_jpeg,
        "gray.png": _encode(".png", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)),
        "rgba.png": _encode(".png", cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)),
        "deep16.png": _encode(".png", bgr.astype(np.uint16) * 257),
        "nested/rotated.jpg": _with_exif_orientation(_encode(".jpg", wide), 6),
        "scan.TIFF": _encode(".tiff", bgr),
        "corrupt.jpg": _corrupt_huffman_table(good_jpeg),
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "zero.png": b"",
        "fake.png": b"this is a text file with an image name",
        "bomb.png": _png_header_only(20000, 20000),
        "notes.txt": b"not an image",
        "report.pdf": b"%PDF-1.4",
        ".DS_Store": b"\x00\x01",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    rows = [patient_row(i, name) for i, name in enumerate(files) if name.endswith(("g", "F"))]
    return root, write_patients(tmp_path / "patients.csv", rows)


def test_every_image_file_is_one_row_with_the_right_status(tmp_path: Path, awkward_folder, tiny_bundle: Path) -> None:
    images, meta = awkward_folder
    out = tmp_path / "results.csv"
    result = run(images, meta, out, tiny_bundle, "--save-masks", tmp_path / "masks")
    assert result.exit_code == 0, result.output
    rows = {row["image"]: row for row in read_csv(out)}
    assert {name: (row["status"], row["error"]) for name, row in rows.items()} == {
        "good.jpg": ("ok", ""),
        "gray.png": ("ok", ""),
        "rgba.png": ("ok", ""),
        "deep16.png": ("ok", ""),
        "nested/rotated.jpg": ("ok", ""),
        "scan.TIFF": ("ok", ""),
        "corrupt.jpg": ("error", "not a readable image (corrupt JPEG data)"),
        "truncated.jpg": ("error", "truncated image file"),
        "zero.png": ("error", "empty file (0 bytes)"),
        "fake.png": ("error", "not a readable image (unrecognised file format)"),
        "bomb.png": ("error", "image is 20000x20000 pixels, above the 100 megapixel limit"),
    }
    # EXIF orientation 6 turns the stored 64x48 picture upright to 48 wide, 64 high.
    mask = cv2.imread(str(tmp_path / "masks" / "nested" / "rotated.jpg.mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (64, 48)
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert summary["status"] == {"ok": 6, "error": 5} and summary["images"] == 11
    assert summary["ignored_files"] == ["notes.txt", "report.pdf"]


# -- ranking, columns and neutralisation ------------------------------------------------------------

def test_csv_is_ranked_by_risk_and_risk_is_the_malignant_sum(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(12)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "results.csv"
    result = run(images, meta, out, tiny_bundle)
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert list(rows[0]) == ["rank", "image", "patient_id", "risk", "flag", "prediction", "confidence", "p_nv",
                             "p_bkl", "p_mel", "p_bcc", "lesion_area", "status", "error", "warnings", "bundle",
                             "screened_at", "new"]
    assert {r["flag"] for r in rows} == {""}  # the tiny bundle has no operating points
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["rank"] for r in ok] == [str(i) for i in range(1, 13)]
    risks = [float(r["risk"]) for r in ok]
    assert risks == sorted(risks, reverse=True) and risks[0] - risks[-1] > 0.3
    malignant = [f"p_{c.name}" for c in load_manifest(tiny_bundle).classes if c.malignant]
    assert malignant == ["p_mel", "p_bcc"]
    for r in ok:
        assert Decimal(r["risk"]) == sum(Decimal(r[c]) for c in malignant)  # exactly, as printed
        probabilities = [float(r[c]) for c in ("p_nv", "p_bkl", "p_mel", "p_bcc")]
        assert sum(probabilities) == pytest.approx(1.0, abs=4e-6)
        assert r["prediction"] == ["nv", "bkl", "mel", "bcc"][int(np.argmax(probabilities))]
        assert r["bundle"].startswith("tiny@1.0+") and len(r["bundle"]) == len("tiny@1.0+") + 8
        assert r["patient_id"].startswith("P")
    assert rows[-1]["image"] == "broken.png" and rows[-1]["rank"] == "" and rows[-1]["status"] == "error"


def test_formulas_are_neutralised_and_extra_columns_kept_on_request(tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "images"
    write_image(images / "=1+1.png", lesion_rgb(1))
    write_image(images / "b.png", lesion_rgb(2))
    meta = write_patients(tmp_path / "p.csv", [
        {"image": "=1+1", "patient_id": "=HYPERLINK(\"http://evil\")", "age": 50, "note": "@SUM(A1)", "dose": "-0.5"},
        {"image": "b.png", "patient_id": "-2+3", "age": 60, "note": "fine", "dose": "+1"}])
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    rows = {r["image"]: r for r in read_csv(out)}
    assert set(rows) == {"'=1+1.png", "b.png"}
    assert rows["'=1+1.png"]["patient_id"] == "'=HYPERLINK(\"http://evil\")"
    assert rows["b.png"]["patient_id"] == "'-2+3"
    assert "note" not in rows["b.png"]  # extra columns only with --keep-columns
    out2 = tmp_path / "kept.csv"
    assert run(images, meta, out2, tiny_bundle, "--keep-columns").exit_code == 0
    rows = {r["image"]: r for r in read_csv(out2)}
    assert (rows["'=1+1.png"]["note"], rows["'=1+1.png"]["dose"]) == ("'@SUM(A1)", "-0.5")
    assert (rows["b.png"]["note"], rows["b.png"]["dose"]) == ("fine", "+1")
    assert list(rows["b.png"])[-2:] == ["note", "dose"]


def test_metadata_problems_are_warned_and_summarised(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, _ = make_folder(4)
    meta = write_patients(tmp_path / "p.csv", [
        patient_row(0, "img_000"), {**patient_row(1, "img_001.png"), "age": "", "sex": "x"},
        patient_row(2, "img_001.png"), patient_row(9, "ghost.png")])
    out = tmp_path / "results.csv"
    result = run(images, meta, out, tiny_bundle)
    assert result.exit_code == 0, result.output
    rows = {r["image"]: r for r in read_csv(out)}
    assert rows["img_000.jpg"]["warnings"] == ""
    assert rows["img_001.png"]["warnings"] == ("2 metadata rows for key 'img_001.png', used the first; "
                                               "age unknown; sex 'x' not recognised, used unknown")
    assert rows["img_002.png"]["warnings"] == "no metadata row" and rows["img_002.png"]["status"] == "ok"
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert summary["metadata_rows_without_image"] == ["ghost.png"]
    assert summary["duplicate_keys"] == {"img_001.png": 2}
    assert summary["images_without_metadata"] == 2
    assert "2 images without a metadata row; 1 metadata rows without an image; 1 duplicate metadata keys" in result.stdout


# -- resume, re-runs and the lock ----------------------------------------------------------------------

def test_rerun_after_adding_images_screens_only_the_new_ones(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(6)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    images, meta = make_folder(9, start=6)  # three more images and their rows
    result = run(images, meta, out, tiny_bundle, "--resume")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert (summary["reused"], summary["screened"], summary["images"]) == (6, 3, 9)
    assert "resuming: 6 of 9 images already screened" in result.stdout
    fresh = tmp_path / "fresh.csv"
    assert run(images, meta, fresh, tiny_bundle).exit_code == 0
    assert rows_without(out, ("screened_at", "new")) == rows_without(fresh, ("screened_at", "new"))
    assert [r["new"] for r in read_csv(out) if r["image"] >= "img_006"] == ["yes"] * 3
    assert sum(r["new"] == "yes" for r in read_csv(out)) == 3


def test_changed_image_is_screened_again(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(4)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    before = {r["image"]: r["risk"] for r in read_csv(out)}
    write_image(images / "img_001.png", lesion_rgb(40))
    os.utime(images / "img_001.png", ns=(1, 10**18))  # a distinct mtime even on coarse clocks
    assert run(images, meta, out, tiny_bundle, "--resume").exit_code == 0
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert (summary["reused"], summary["screened"]) == (3, 1)
    after = {r["image"]: r["risk"] for r in read_csv(out)}
    assert after["img_001.png"] != before["img_001.png"]
    assert {k: v for k, v in after.items() if k != "img_001.png"} == \
        {k: v for k, v in before.items() if k != "img_001.png"}


def test_existing_journal_needs_resume(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    out = tmp_path / "results.csv"
    assert run(images, meta, out, tiny_bundle).exit_code == 0
    result = run(images, meta, out, tiny_bundle)
    assert result.exit_code == 2
    assert only_stderr_line(result) == (f"Error: {out}.journal exists from an earlier run: pass --resume to "
                                        f"reuse its results (only new or changed images are screened), or "
                                        f"delete it to screen everything again")


def test_lock_blocks_a_second_run(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    out = tmp_path / "results.csv"
    hold = "import sys, time; from screening.journal import OutputLock; OutputLock(sys.argv[1]).acquire(); " \
           "print('held', flush=True); time.sleep(60)"
    other = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "held\n"
        result = run(images, meta, out, tiny_bundle)
    finally:
        other.kill()  # kill -9: its lock file stays, its lock does not
        other.wait()
    assert result.exit_code == 5
    assert only_stderr_line(result) == (f"Error: {out} is being written by another screen run (pid {other.pid} "
                                        f"on {socket.gethostname()}): wait for it to finish")
    assert not out.exists() and not journal_path(out).exists()
    # the kernel released the lock with that process: the next night starts without a word
    assert lock_path(out).exists()
    result = run(images, meta, out, tiny_bundle, "--quiet")
    assert (result.exit_code, result.stderr, result.stdout) == (0, "", "")
    assert not lock_path(out).exists()


# -- the command line itself ---------------------------------------------------------------------------

def test_screen_dir_means_screen_folder_dir(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(3)
    result = screen(images, "--meta", meta, "--out", tmp_path / "a.csv", "--backend", "onnxruntime",
                    SCREEN_BUNDLE=str(tiny_bundle))
    assert result.exit_code == 0, result.output
    assert run(images, meta, tmp_path / "b.csv", tiny_bundle).exit_code == 0
    assert rows_without(tmp_path / "a.csv") == rows_without(tmp_path / "b.csv")


def test_printed_summary(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(3)
    result = run(images, meta, tmp_path / "results.csv", tiny_bundle)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("backend: onnxruntime ") and lines[0].endswith(" (onnxruntime requested)")
    assert any(line.startswith("Screened 3 images (ok 3, error 0) in ") for line in lines)
    assert "Highest risk:" in lines
    assert lines[-1] == load_manifest(tiny_bundle).statement
    assert result.stderr == ""


def test_help_is_complete() -> None:
    result = screen("folder", "--help")
    assert result.exit_code == 0
    for text in ("screen folder sample_data/images --meta sample_data/patients.csv", "Exit codes:",
                 "5  output locked by another running screen", "--resume", "--save-masks",
                 "--keep-columns", "--quiet", "--workers", "--batch-size", "--backend", "Not for diagnosis"):
        assert text in result.output, text
    top = screen("--help")
    assert "Exit codes:" in top.output and "folder" in top.output
    for name, command in cli.commands.items():
        assert command.help, f"`screen {name}` has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"`screen {name} {param.opts[0]}` has no help text"


# -- real dermoscopy images (../shared/data), when present ------------------------------------------

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.data
@pytest.mark.skipif(not (SHARED_DATA / "ham10000_dev").is_dir(), reason="needs ../shared/data/ham10000_dev")
def test_real_ham10000_images_with_their_labels_csv_as_metadata(tmp_path: Path, tiny_bundle: Path) -> None:
    source = SHARED_DATA / "ham10000_dev"
    images = tmp_path / "images"
    images.mkdir()
    chosen = sorted((source / "images").iterdir())[:24]
    for path in chosen:  # links, not copies: the data stays where it is
        (images / path.name).symlink_to(path.resolve())
    out = tmp_path / "results.csv"
    result = run(images, source / "labels.csv", out, tiny_bundle, "--keep-columns")
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert sorted(r["image"] for r in rows) == [p.name for p in chosen]
    # The tiny bundle's segmenter (dark pixels) finds no lesion in the odd light one: a warning, the risk kept.
    assert all(r["status"] == "ok" for r in rows)
    assert not any("no metadata row" in r["warnings"] for r in rows)
    assert all(r["diagnosis"] in {"nv", "mel", "bkl", "bcc", "akiec", "vasc", "df"} for r in rows)
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    n_rows = len((source / "labels.csv").read_text().splitlines()) - 1
    assert len(summary["metadata_rows_without_image"]) == n_rows - 24
