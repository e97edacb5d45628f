"""Real Ray clusters on this machine for the tests, started with ``ray start`` like a real one.

Each node is its own raylet, object store and resource set. Every process of a cluster runs
under one private ``--temp-dir``, which is how ``stop`` finds and ends them (and only them),
so no Ray process outlives the tests. The agents get fixed ports: with dynamic ports a raylet
waits at most 15 s for its dashboard agent to report one, which a loaded 2-core machine does
not always manage (ray-project/ray#65983).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

# The raylet's 15 s wait for its agent is a lottery on a loaded machine: a failed start is
# cleaned up and tried again.
START_ATTEMPTS = 5
OBJECT_STORE_BYTES = 200 * 2**20  # Ray's default is 30 % of RAM: far too much beside the tests
RAY = str(Path(sys.executable).with_name("ray"))
NODE_TAG = "SCREENING_TEST_RAY_NODE"  # "<temp dir>:<node name>" in every process of a node
# No token auth (a throwaway local cluster), no usage reporting actor.
# Longer start-up deadlines than Ray's for the GCS, the raylet and each worker process (a raylet
# gives up on a worker that has not registered after 60 s; the agent's 15 s is fixed).
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
       "RAY_gcs_server_request_timeout_seconds": "120", "RAY_raylet_start_wait_time_s": "300",
       "RAY_worker_register_timeout_seconds": "900"}


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pids_tagged(tag: str) -> list[int]:
    """Processes whose environment has ``NODE_TAG`` starting with ``tag``, and their descendants.

    The environment, not the command line: Ray renames its processes (``ray::IDLE``), and the
    raylet, GCS and workers inherit the tag from ``ray start``; the agents get an environment
    of their own, so they are found as the raylet's children.
    """
    wanted = f"{NODE_TAG}={tag}".encode()
    tagged, parents = set(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if any(item.startswith(wanted) for item in environ.split(b"\0")):
            tagged.add(int(entry.name))
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in tagged} - tagged
        tagged |= children
        grown = bool(children)
    return sorted(tagged)


def _start_priority() -> None:
    """``ray start`` at the niceness in $SCREENING_TEST_RAY_START_NICENESS, when set.

    On a machine kept busy at normal priority, a node started at niceness 19 cannot get its
    agent up within the raylet's fixed 15 s (``import ray`` alone took 72 s of wall time for
    1.2 s of CPU). Only the start-up runs at that niceness: the node's processes are set back
    to the tests' niceness as soon as it is up, before any worker is forked.
    """
    niceness = os.environ.get("SCREENING_TEST_RAY_START_NICENESS")
    if niceness is not None:
        os.setpriority(os.PRIO_PROCESS, 0, int(niceness))


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class RayStartCluster:
    """A head node and extra worker nodes started with ``ray start``; a context manager."""

    def __init__(self, head_cpus: float = 2, timeout_s: float = 300) -> None:
        # Short: Ray's socket paths under it must stay within the 107 bytes of a Unix socket.
        self.temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
        self.timeout_s = timeout_s
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, int] = {}  # node name -> its raylet's node manager port
        self._start("--head", f"--port={self.port}", "--include-dashboard=false",
                    cpus=head_cpus, name="head")

    def add_node(self, name: str, cpus: float) -> None:
        """Start another node on this machine and join it to the cluster."""
        self._start(f"--address={self.address}", cpus=cpus, name=name)

    def _start(self, *args: str, cpus: float, name: str) -> None:
        for attempt in range(START_ATTEMPTS):
            try:
                return self._start_once(*args, cpus=cpus, name=name)
            except RuntimeError:
                if attempt == START_ATTEMPTS - 1:
                    self.stop()
                    raise
                self._kill_node_processes()

    def _start_once(self, *args: str, cpus: float, name: str) -> None:
        manager_port = free_port()
        command = [RAY, "start", *args, f"--num-cpus={cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}",
                   f"--temp-dir={self.temp_dir}", f"--node-manager-port={manager_port}",
                   f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                   f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
                   f"--resources={json.dumps({f'node_{name}': 1})}", "--disable-usage-stats"]
        try:
            subprocess.run(command, env={**ENV, NODE_TAG: f"{self.temp_dir}:{name}"}, check=True,
                           capture_output=True, timeout=self.timeout_s, preexec_fn=_start_priority)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = getattr(exc, "stderr", b"") or b""
            raise RuntimeError(f"ray start failed: {output.decode(errors='replace')[-2000:]}") from exc
        self.nodes[name] = manager_port
        # Back to this process's priority: the workers Ray forks from now on inherit it.
        for pid in _pids_tagged(f"{self.temp_dir}:{name}"):
            try:
                os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0))
            except OSError:
                pass

    def _kill_node_processes(self) -> None:
        """After a failed start: a failed head takes the whole cluster down, a failed worker
        node only its own processes."""
        if not self.nodes:
            self.stop()
            return
        for pid in _pids_tagged(f"{self.temp_dir}:"):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if not any(item.startswith(f"{NODE_TAG}={self.temp_dir}:{name}".encode())
                       for name in self.nodes for item in environ):
                _kill([pid])

    def kill_node(self, name: str) -> None:
        """SIGKILL a node's raylet: the node dies as a crashed machine would; its workers follow."""
        self.nodes.pop(name)
        _kill(_pids_tagged(f"{self.temp_dir}:{name}"))

    def stop(self) -> None:
        """End every process of this cluster (raylets, GCS, agents; their workers exit with them)."""
        for _ in range(3):
            pids = _pids_tagged(f"{self.temp_dir}:")
            if not pids:
                break
            _kill(pids)
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)  # Ray's session logs

    def __enter__(self) -> "RayStartCluster":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
