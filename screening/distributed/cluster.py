"""Joining (or starting) the Ray instance a ``--ray`` run screens on."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import BackendUnavailable, InputError

LOCAL = "local"  # `--ray` without an address: start a Ray instance inside this run
RAY_NOT_INSTALLED = "Ray is not installed: pip install '.[distributed]' (ray[data]) to use --ray"


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a one-line BackendUnavailable saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Core alone has no Data API)
    except ImportError:
        raise BackendUnavailable(RAY_NOT_INSTALLED) from None
    return ray


@dataclass(frozen=True)
class ClusterInfo:
    """What the driver sees of the cluster when the run starts."""

    address: str  # what was asked: "local", "auto" or an address
    nodes: int  # alive nodes
    cpus: float
    gpus: float


@contextmanager
def connect(address: str, *, num_cpus: int | None = None,
            object_store_memory: int | None = None) -> Iterator[ClusterInfo]:
    """Connect this process to Ray for the length of the block.

    A Ray already initialised in this process (a library caller or a test set it up) is used
    as it is and left running; otherwise ``"local"`` starts a private instance and any other
    address joins a running cluster (``"auto"``: the one started on this machine with
    ``ray start``), and the connection is closed at the end.

    Raises:
        BackendUnavailable: Ray is not installed.
        InputError: no cluster at ``address``.
    """
    ray = import_ray()
    owned = not ray.is_initialized()
    if owned:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if address == LOCAL:
            kwargs.update(num_cpus=num_cpus, object_store_memory=object_store_memory)
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise InputError(f"--ray {address}: no Ray cluster there ({_one_line(exc)})") from None
    try:
        resources = ray.cluster_resources()
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        yield ClusterInfo(address, nodes, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)))
    finally:
        if owned:
            ray.shutdown()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
