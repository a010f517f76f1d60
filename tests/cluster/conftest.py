"""The two-node cluster and the store its runs write to, for tests/cluster/.

Every test here is marked `cluster`: `-m "not cluster"` leaves them out, and they skip
(with `ray start`'s own words) where a node cannot start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.local_cluster import RayStartFailed, TwoNodeRayCluster, ray_binary

START_ATTEMPTS = 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[TwoNodeRayCluster]:
    """Yield a started head + worker node (1 CPU each); end their processes afterwards."""
    import ray._private.utils

    if not os.access(ray_binary(), os.X_OK):
        pytest.skip(f"no `ray` executable next to {ray_binary()}")
    if (missing := ray._private.utils.get_dashboard_dependency_error()) is not None:
        pytest.skip(f"the state API needs ray[default] (the dashboard): {missing}")
    # A short root: Ray's unix sockets live under it, and their paths may not pass 107 bytes.
    # Ray gives a starting raylet a fixed 30 s to register (ray/_private/node.py); on a busy
    # 2-core machine that sometimes passes, so a start that timed out is tried once more.
    for attempt in range(START_ATTEMPTS):
        root = Path(tempfile.mkdtemp(prefix="rf-ray-", dir="/tmp"))
        cluster = TwoNodeRayCluster(root)
        try:
            cluster.start()
            break
        except RayStartFailed as exc:
            survivors = cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
            assert not survivors, f"cluster processes still alive after SIGKILL: {survivors}"
            if attempt == START_ATTEMPTS - 1:
                pytest.skip(f"cannot start a Ray cluster here: {exc}")
    try:
        yield cluster
    finally:
        survivors = cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert not survivors, f"cluster processes still alive after SIGKILL: {survivors}"


@pytest.fixture
def cluster_store(s3_store: str) -> str:
    """Return the store URI the cluster run writes to: an `s3://` store on the local S3
    server, as on a real cluster whose nodes share no disk (its credentials and endpoint
    are in the AWS variables, which the driver's environment passes on)."""
    return s3_store
