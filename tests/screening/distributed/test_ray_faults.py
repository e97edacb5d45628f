"""Faults on a real multi-node Ray cluster: a worker node killed mid-run, a driver killed with
``kill -9`` and resumed. Every image ends as exactly one row, identical to one process's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from csv_compare import rows_without
from ray_cluster import ENV, RayStartCluster
from screening.cli import cli
from screening.journal import journal_path
from screening.progress import Reporter
from screening.session import FolderRequest, screen_folder

ray = pytest.importorskip("ray", reason="Ray Data is the extra [distributed]")
from screening.distributed.run import RaySettings  # noqa: E402

pytestmark = pytest.mark.slow
BATCH = 2


def screen_locally(images: Path, meta: Path, out: Path, bundle: Path) -> list[list[str]]:
    args = ["folder", images, "--meta", meta, "--out", out, "--bundle", bundle, "--backend", "onnxruntime",
            "--batch-size", BATCH, "--quiet"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return rows_without(out)  # all but the run-time columns (screened_at)


def journaled(out: Path) -> int:
    """Finished images in the journal (complete lines after the header)."""
    try:
        return max(0, journal_path(out).read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def wait_until(condition, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the run did not get there in time"
        time.sleep(0.1)


def test_worker_node_killed_mid_run(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(60)
    expected = screen_locally(images, meta, tmp_path / "local.csv", tiny_bundle)
    out = tmp_path / "ray.csv"
    os.environ.update({key: ENV[key] for key in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")})
    # Room on the head for both actors after the worker node is gone; SPREAD puts one actor on
    # each node at the start.
    with RayStartCluster(head_cpus=3) as cluster:
        cluster.add_node("worker", cpus=2)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        try:
            killer = threading.Thread(target=lambda: (wait_until(lambda: journaled(out) >= 12),
                                                      cluster.kill_node("worker")), daemon=True)
            killer.start()
            settings = RaySettings(address=cluster.address, actors=2, decode_cpus=0.25, batches_per_read=1)
            summary = screen_folder(FolderRequest(images_dir=images, meta_csv=meta, output=out,
                                                  bundle_dir=tiny_bundle, backend="onnxruntime",
                                                  batch_size=BATCH, ray=settings), Reporter(quiet=True))
            killer.join(timeout=5)
        finally:
            ray.shutdown()
    assert "worker" not in cluster.nodes  # it was killed during the run, not after
    # Both actors were placed (SPREAD); whether the worker node's actor answered before it died
    # is timing (on a quiet machine the head's actor alone may deliver the first 12 images).
    assert "(2 nodes, 2 actors, results from" in summary.backend
    assert (summary.images, summary.screened) == (60, 60)
    assert rows_without(out) == expected


DRIVER = """
import sys
from screening.cli import main
sys.argv = ["screen", *sys.argv[1:]]
main()
"""


def test_driver_killed_then_resumed(tmp_path: Path, make_folder, tiny_bundle: Path) -> None:
    images, meta = make_folder(40)
    expected = screen_locally(images, meta, tmp_path / "local.csv", tiny_bundle)
    out = tmp_path / "ray.csv"
    with RayStartCluster(head_cpus=2) as cluster:
        command = [sys.executable, "-c", DRIVER, "folder", str(images), "--meta", str(meta), "--out", str(out),
                   "--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--batch-size", str(BATCH),
                   "--quiet", f"--ray={cluster.address}"]
        driver = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: journaled(out) >= 6 or driver.poll() is not None)
            os.kill(driver.pid, signal.SIGKILL)
        finally:
            driver.wait()
        assert driver.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        killed_at = journaled(out)

        resumed = subprocess.run([*command, "--resume"], env=ENV, capture_output=True, text=True, timeout=900)

    assert resumed.returncode == 0, resumed.stderr
    assert killed_at < 40
    assert rows_without(out) == expected
