"""`screen folder` as the CLI tests call it: in-process, ONNX Runtime, one decode worker."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from screening.cli import cli


def run_folder(images: Path, meta: Path, out: Path | str, bundle: Path, *extra: object) -> Result:
    args = ["folder", images, "--meta", meta, "--out", out, "--bundle", bundle, "--backend", "onnxruntime",
            "--workers", 1, *extra]
    return CliRunner().invoke(cli, [str(a) for a in args])
