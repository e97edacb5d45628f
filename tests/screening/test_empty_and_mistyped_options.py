"""Options a 2 a.m. script or job config gets wrong: an empty path from an unset variable, a TOML
value of the wrong type, a time limit of ``inf``. Each stops the command with exit 2 and a line
naming the option, before anything is screened or written; none is a traceback or a guess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from folder_runner import screen

pytestmark = pytest.mark.usefixtures("no_default_bundle")


def refused(result, *words: str) -> str:
    """The error text of a command refused with exit 2 (a usage or input error, no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not a Python exception
    text = result.stderr
    for word in words:
        assert word in text, text
    return text


def test_an_empty_images_folder_argument_does_not_screen_the_current_folder(
        tmp_path: Path, make_folder, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`screen folder "$IMAGES" ...` with IMAGES unset passes "": that was the current folder,
    screened in silence (a cron job's home, a clinic's other pictures) into the night's results."""
    images, meta = make_folder(2)
    monkeypatch.chdir(images)
    out = tmp_path / "results.csv"
    result = screen("folder", "", "--meta", meta, "--out", out, "--bundle", tiny_bundle, "--backend", "onnxruntime")
    refused(result, "IMAGES_DIR", "empty")
    assert not out.exists()


@pytest.mark.parametrize("option", ["--meta", "--out", "--bundle", "--report", "--save-masks", "--log-file"])
def test_an_empty_path_option_of_screen_folder_is_refused(
        tmp_path: Path, make_folder, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch, option: str) -> None:
    images, meta = make_folder(2)
    monkeypatch.chdir(tmp_path)
    given = {"--meta": meta, "--out": tmp_path / "results.csv", "--bundle": tiny_bundle, option: ""}
    args = [arg for name, value in given.items() for arg in (name, value)]
    refused(screen("folder", images, *args, "--backend", "onnxruntime"), option, "empty")
    assert not (tmp_path / "results.csv").exists()


def test_empty_paths_of_evaluate_and_calibrate_are_refused(tmp_path: Path, make_folder, tiny_bundle: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`screen evaluate ""` took the current folder for an images folder to screen first, and
    `screen calibrate --out ""` the current folder for the derived bundle's."""
    images, meta = make_folder(2)
    monkeypatch.chdir(images)
    refused(screen("evaluate", "", "--labels", meta, "--meta", meta, "--out", tmp_path / "eval",
                   "--bundle", tiny_bundle), "SOURCE", "empty")
    refused(screen("calibrate", "--bundle", tiny_bundle, "--results", tmp_path / "r.csv", "--labels", meta,
                   "--out", ""), "--out", "empty")
    assert sorted(os.listdir(images)) == ["img_000.jpg", "img_001.png"]


def job(tmp_path: Path, images: Path, meta: Path, bundle: Path, line: str) -> Path:
    """A job config of a working night, with ``line`` in place of the line of its key."""
    lines = {"images_dir": f'"{images}"', "meta": f'"{meta}"', "out": f'"{tmp_path / "results.csv"}"',
             "bundle": f'"{bundle}"', "backend": '"onnxruntime"'}
    key, value = (part.strip() for part in line.split("=", 1))
    lines[key] = value
    config = tmp_path / "nightly.toml"
    config.write_text("".join(f"{key} = {value}\n" for key, value in lines.items()))
    return config


@pytest.mark.parametrize("line, words", [
    ('images_dir = ""', ["IMAGES_DIR", "empty"]),
    ("resume = 0", ["resume", "true or false"]),
    ("quiet = [true]", ["quiet", "true or false"]),
    ('meta = ["a.csv", "b.csv"]', ["meta", "a single value"]),
    ("out = 1979-05-27T07:32:00Z", ["out", "a text"]),
    ("images_dir = 5", ["IMAGES_DIR", "a text"]),
    ("batch-size = 1.9", ["batch-size", "whole number"]),
    ("batch-size = true", ["batch-size", "not true or false"]),
    ('column = "age=Alter"', ["column", "a list"]),
    ("column = [5]", ["column", "a list of texts"]),
    ("decode-timeout = inf", ["--decode-timeout", "at most 86400"]),
])
def test_a_job_config_value_of_the_wrong_type_is_one_line_not_a_traceback(
        tmp_path: Path, make_folder, tiny_bundle: Path, line: str, words: list[str]) -> None:
    """Each was a Python traceback (AttributeError, TypeError, OverflowError) or a silent guess
    (batch-size 1.9 ran as 1, true as 1)."""
    images, meta = make_folder(2)
    config = job(tmp_path, images, meta, tiny_bundle, line)
    refused(screen("folder", "--config", config), *words)
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.parametrize("value", ["inf", "1e12", "nan", "0"])
def test_a_decode_timeout_of_inf_is_refused_by_folder_and_report(tmp_path: Path, make_folder, tiny_bundle: Path,
                                                                   value: str) -> None:
    """``--decode-timeout inf`` (meaning "no limit") ended in an OverflowError traceback."""
    images, meta = make_folder(2)
    refused(screen("folder", images, "--meta", meta, "--out", tmp_path / "results.csv", "--bundle", tiny_bundle,
                   "--backend", "onnxruntime", "--decode-timeout", value), "--decode-timeout")
    refused(screen("report", tmp_path / "results.csv", "--images", images, "--bundle", tiny_bundle,
                   "--decode-timeout", value), "--decode-timeout")


@pytest.mark.parametrize("lines, words", [
    ("batch-size = 2\nbatch_size = 3\n", ["batch-size and batch_size", "the same option"]),
    ('images = "/elsewhere"\n', ["images_dir and images", "the same option"]),
])
def test_one_option_given_twice_in_a_job_config_under_two_spellings_is_refused(
        tmp_path: Path, make_folder, tiny_bundle: Path, lines: str, words: list[str]) -> None:
    """TOML refuses a key given twice, but not 'batch-size' beside 'batch_size' (or images_dir beside
    images): the later one won without a word, the folder screened being whichever came last."""
    images, meta = make_folder(2)
    config = job(tmp_path, images, meta, tiny_bundle, 'backend = "onnxruntime"')
    config.write_text(config.read_text() + lines)
    refused(screen("folder", "--config", config), *words)
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.parametrize("args", [
    ("bundle", "list", ""),
    ("bundle", "info", ""),
    ("bundle", "verify", ""),
    ("engines", "build", "--bundle", ""),
    ("engines", "verify", "--images", ""),
    ("engines", "verify", "--meta", ""),
])
def test_an_empty_path_of_the_bundle_and_engine_commands_is_refused(tmp_path: Path, monkeypatch, args) -> None:
    """`screen bundle info "$BUNDLE"` with BUNDLE unset looked at the current folder (and `engines
    verify --images ""` compared the engines on whatever pictures it held), not at what was meant."""
    monkeypatch.chdir(tmp_path)
    refused(screen(*args), "empty")
