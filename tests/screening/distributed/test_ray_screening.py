"""`screen folder --ray` on a real local Ray cluster: the same rows, bytes and guarantees as one process."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from csv_compare import rows_without
from screening.cli import cli
from screening.journal import journal_path, lock_path
from screening.results import summary_path

pytest.importorskip("ray", reason="Ray Data is the extra [distributed]")


def screen(images: Path, meta: Path, out: Path, bundle: Path, *extra: object) -> Result:
    args = ["folder", images, "--meta", meta, "--out", out, "--bundle", bundle, "--backend", "onnxruntime",
            "--batch-size", 3, "--quiet", *extra]
    return CliRunner().invoke(cli, [str(a) for a in args])


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def journal_outcomes(out: Path) -> list[dict]:
    """The journal's outcome lines, in order, without when each image was screened (nor the line's
    checksum, which covers that time)."""
    lines = journal_path(out).read_text(encoding="utf-8").splitlines()[1:]
    return [{k: v for k, v in json.loads(line).items() if k not in ("screened_at", "checksum")} for line in lines]


def with_bad_files(images: Path) -> None:
    """An empty file and a truncated JPEG: error rows, on a cluster as on one machine."""
    (images / "empty.png").write_bytes(b"")
    good = next(images.glob("*.jpg")).read_bytes()
    (images / "sub").mkdir()
    (images / "sub" / "truncated.jpg").write_bytes(good[: len(good) // 3])


def test_ray_csv_is_byte_identical_to_one_process(tmp_path: Path, make_folder, tiny_bundle: Path,
                                                  ray_head) -> None:
    images, meta = make_folder(14)
    with_bad_files(images)
    local, distributed = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert screen(images, meta, local, tiny_bundle).exit_code == 0

    result = screen(images, meta, distributed, tiny_bundle, f"--ray={ray_head.address}")

    assert result.exit_code == 0, result.output
    # Every byte but the run-time columns (screened_at): identical rows, ranks and numbers.
    assert rows_without(distributed) == rows_without(local)
    assert journal_outcomes(distributed) == journal_outcomes(local)
    # The journal names the workers' backend, so a --resume without --ray (or back) reuses it.
    assert [json.loads(journal_path(out).read_text().splitlines()[0])["backend"]
            for out in (local, distributed)] == ["onnxruntime", "onnxruntime"]
    assert not lock_path(distributed).exists()
    table = rows(distributed)
    assert sorted(row["image"] for row in table) == sorted(
        [f"img_{i:03d}.{'png' if i % 3 else 'jpg'}" for i in range(14)] + ["empty.png", "sub/truncated.jpg"])
    assert [row["status"] for row in table[-2:]] == ["error", "error"]
    summary = json.loads(summary_path(distributed).read_text())
    assert summary["backend"].startswith("ray ") and "onnxruntime" in summary["backend"]
    assert (summary["images"], summary["screened"], summary["status"]) == (16, 16, {"ok": 14, "error": 2})


@pytest.mark.slow
def test_ray_resume_screens_only_new_images(tmp_path: Path, make_folder, tiny_bundle: Path, ray_head) -> None:
    images, meta = make_folder(8)
    out = tmp_path / "results.csv"
    assert screen(images, meta, out, tiny_bundle, f"--ray={ray_head.address}").exit_code == 0
    images, meta = make_folder(13, start=8)  # five new images, and their patients.csv rows

    result = screen(images, meta, out, tiny_bundle, "--resume", f"--ray={ray_head.address}")

    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path(out).read_text())
    assert (summary["screened"], summary["reused"]) == (5, 8)
    fresh = tmp_path / "fresh.csv"
    assert screen(images, meta, fresh, tiny_bundle).exit_code == 0
    # The same results as one fresh run, but for the run-time columns: `new` says which rows
    # this resume screened (yes) and which it reused from the first run (no).
    assert rows_without(out, ("screened_at", "new")) == rows_without(fresh, ("screened_at", "new"))
    assert sorted(row["new"] for row in rows(out)) == ["no"] * 8 + ["yes"] * 5


def test_ray_run_keeps_the_lock_and_journal_rules(tmp_path: Path, make_folder, tiny_bundle: Path,
                                                  ray_head) -> None:
    images, meta = make_folder(3)
    out = tmp_path / "results.csv"
    assert screen(images, meta, out, tiny_bundle, f"--ray={ray_head.address}").exit_code == 0

    again = screen(images, meta, out, tiny_bundle, f"--ray={ray_head.address}")

    assert again.exit_code == 2
    assert "exists from an earlier run: pass --resume" in again.stderr


def test_ray_actors_needs_ray(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(1)
    result = screen(images, meta, tmp_path / "r.csv", tiny_bundle, "--ray-actors", 2)
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --ray-actors needs --ray"
