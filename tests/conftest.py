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


@pytest.fixture(scope="session")
def s3_endpoint():
    """Yield the URL of a local S3-compatible server (moto's) on 127.0.0.1 at a free port.

    moto honours `If-None-Match: *` on PutObject (a second put of a key answers 412), the
    conditional write an s3:// store commits with.
    """
    import logging

    from moto.server import ThreadedMotoServer

    # One log line per request otherwise, in every failing test's report.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_store(s3_endpoint, monkeypatch):
    """Return `s3://<new bucket>/stores` on the local S3 server, its credentials and
    endpoint in the AWS variables (as a user sets them)."""
    import uuid

    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "roleforge-test",
        "AWS_SECRET_ACCESS_KEY": "roleforge-test-secret",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    bucket = f"roleforge-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return f"s3://{bucket}/stores"
