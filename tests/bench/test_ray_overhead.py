"""Tests for bench/ray_overhead.py's process accounting (no Ray needed: it reads /proc)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import ray_overhead

# Burns about 0.6 s of CPU, then idles so that the watcher samples it before it exits. The
# trailing arguments only make its command line look like a screen run's.
BUSY = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(0.6)"


@pytest.mark.parametrize(("comm", "cmdline", "role"), [
    ("raylet", ["/venv/lib/ray/core/src/ray/raylet/raylet", "--node_id=1"], "raylet"),
    ("gcs_server", ["/venv/lib/ray/core/src/ray/gcs/gcs_server"], "gcs_server"),
    ("ray::MapWorker", ["ray::MapWorker(Map(ScreeningActor)).__call__", ""], "ray::MapWorker(Map(ScreeningActor))"),
    ("ray::IDLE", ["ray::IDLE", ""], "ray::IDLE"),
    ("python", ["python", "/venv/lib/ray/_private/workers/default_worker.py", "--node-ip-address=1"],
     "ray worker starting"),
    ("python", ["/venv/bin/python", "-m", "screening", "folder", "imgs", "--ray=auto"], "screen (driver)"),
    ("python", ["/venv/bin/python", "-m", "screening.decode_pool", "5", "6"], "decoder child"),
    ("bash", ["bash", "-c", "make test"], None),
])
def test_processes_are_told_apart_by_name_and_command_line(comm: str, cmdline: list[str], role: str | None) -> None:
    assert ray_overhead.role_from(comm, cmdline) == role


def _cpu_of(pid: int) -> float:
    return ray_overhead.processes()[pid].cpu_s


def test_the_cpu_a_run_uses_is_counted_for_its_role(tmp_path: Path) -> None:
    watcher = ray_overhead.Watcher(tmp_path / "results.csv.journal", interval=0.05)
    watcher.start()
    try:
        subprocess.run([sys.executable, "-c", BUSY, "-m", "screening", "folder"], check=True)
        time.sleep(0.1)
    finally:
        watcher.stop.set()
        watcher.join()
    assert 0.4 <= watcher.cpu_by_role["screen (driver)"] <= 1.5, watcher.cpu_by_role


# Burns 0.6 s, waits for its go file, burns 0.3 s more, then idles to be sampled before it exits.
BEFORE_AND_DURING = (
    "import os, sys, time\n"
    "def burn(s):\n    end = time.process_time() + s\n    while time.process_time() < end: pass\n"
    "burn(0.6)\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)\nburn(0.3)\ntime.sleep(0.6)")


def test_a_process_already_running_counts_only_what_it_spends_during_the_run(tmp_path: Path) -> None:
    go = tmp_path / "go"
    child = subprocess.Popen([sys.executable, "-c", BEFORE_AND_DURING, str(go), "-m", "screening", "folder"])
    try:
        deadline = time.monotonic() + 60
        while child.pid not in ray_overhead.processes() or _cpu_of(child.pid) < 0.6:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.02)
        time.sleep(0.02)  # its start tick is now strictly before the watcher's
        watcher = ray_overhead.Watcher(tmp_path / "results.csv.journal", interval=0.05)
        watcher.start()
        time.sleep(0.2)
        go.touch()
        child.wait(timeout=120)
    finally:
        child.kill()
    watcher.stop.set()
    watcher.join()
    assert 0.15 <= watcher.cpu_by_role["screen (driver)"] <= 0.6, watcher.cpu_by_role  # the 0.3 s, not 0.9
