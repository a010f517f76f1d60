"""Shared fixtures: one Ray session for the whole test run, started only when a test asks."""

from __future__ import annotations

import os

import pytest

# Set before Ray starts so its workers inherit them (see PERF_NOTES.md).
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "16777216")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "268435456")
os.environ.setdefault("RAY_DATA_ENABLE_OP_RESOURCE_RESERVATION", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="session")
def ray_session():
    """Yield a local Ray with 2 CPUs and no dashboard, shared by every test that needs it."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
    yield ray
    ray.shutdown()
