"""A real Ray cluster (``ray start``, 2 CPUs, a 200 MB object store) for the ``--ray`` tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ray_cluster import ENV, RayStartCluster  # noqa: E402


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayStartCluster]:
    """A one-node cluster, with this test process connected to it as the driver; stopped after
    the module, with every process it started."""
    ray = pytest.importorskip("ray", reason="Ray Data is the extra [distributed]")
    saved = {key: os.environ.get(key) for key in ENV}
    os.environ.update({key: ENV[key] for key in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")})
    with RayStartCluster(head_cpus=2) as cluster:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        try:
            yield cluster
        finally:
            ray.shutdown()
    for key in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED"):
        if saved[key] is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved[key]
