"""`screen` as the CLI tests call it: in this process through Click's CliRunner, and `screen folder` on ONNX Runtime."""

from __future__ import annotations

import csv
import io
import subprocess
import time
from pathlib import Path

from click.testing import CliRunner, Result

from bundle_factory import lesion_rgb, write_image
from screening.cli import cli


def screen(*args: object, **env: str) -> Result:
    """`screen ARGS...` in this process, every argument as text; ``env`` is added to the environment."""
    return CliRunner().invoke(cli, [str(a) for a in args], env=env or None)


def folder_args(images: Path, meta: Path, out: Path | str, bundle: Path, *extra: object,
                batch_size: int | None = None, workers: int = 1) -> list[str]:
    """The arguments of `screen folder` on ONNX Runtime, ``extra`` last (a repeated option there wins).

    ``batch_size`` None leaves the CLI's default batch size.
    """
    batch = [] if batch_size is None else ["--batch-size", batch_size]
    args = ["folder", images, "--meta", meta, "--out", out, "--bundle", bundle, "--backend", "onnxruntime",
            *batch, "--workers", workers, *extra]
    return [str(a) for a in args]


def run_folder(images: Path, meta: Path, out: Path | str, bundle: Path, *extra: object,
               batch_size: int | None = None, workers: int = 1) -> Result:
    """`screen folder` in this process with :func:`folder_args` (one decode worker unless told)."""
    return screen(*folder_args(images, meta, out, bundle, *extra, batch_size=batch_size, workers=workers))


def error_line(result: Result, code: int = 2) -> str:
    """The one line a refused run prints on stderr, after checking its exit code (2: bad input)."""
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def stop_with(process: subprocess.Popen, signum: int, timeout: float = 60) -> tuple[str, str, float]:
    """Send ``signum`` to a running `screen` process and wait for it to end: its stdout, its
    stderr and the seconds it took to stop (what the interrupt tests bound)."""
    process.send_signal(signum)
    sent = time.monotonic()
    stdout, stderr = process.communicate(timeout=timeout)
    return stdout, stderr, time.monotonic() - sent


def small_folder(tmp_path: Path, goods: int = 2) -> tuple[Path, Path]:
    """An images folder of ``goods`` lesion pictures and a patients CSV naming the first."""
    images = tmp_path / "images"
    for index in range(goods):
        write_image(images / f"good_{index}.png", lesion_rgb(index))
    meta = tmp_path / "patients.csv"
    meta.write_text("image,age\ngood_0.png,40\n")
    return images, meta


def rows_by_image(out: Path) -> dict[str, dict[str, str]]:
    """The results CSV's rows by image, read as a spreadsheet would (BOM included)."""
    return {row["image"]: row for row in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig")))}
