"""The `roleforge view` command: it serves until stopped, opens at the version asked, warns
when it listens beyond this machine, and refuses a dataset the store does not hold."""

from __future__ import annotations

import os
import re

from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.view.server import is_loopback
from tests.pipeline.view.conftest import NAME


def test_view_refuses_a_dataset_the_store_does_not_hold(demo_store):
    result = CliRunner().invoke(app, ["view", "nope@v1", "--store", demo_store.root, "--out", "x"])
    assert result.exit_code == 1 and "has no committed version" in result.output


def test_only_loopback_hosts_count_as_local():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def _start_view(*args: str):
    """Start `roleforge view ARGS` as a process; return it and the URL it printed."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "view", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = process.stdout.readline()
    match = re.search(r"(http://\S+/)", line)
    assert match, (line, process.stderr.read() if process.poll() is not None else "")
    return process, match.group(1)


def test_view_serves_until_stopped_and_opens_at_the_version_asked(demo_store):
    import urllib.request

    process, url = _start_view(f"{NAME}@v2", "--store", demo_store.root)
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url) as response:  # / redirects to v2's rows
            assert response.url.endswith(f"/d/{NAME}/v2/")
            assert f"{NAME}@v2" in response.read().decode("utf-8")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_view_on_another_host_warns_that_anyone_can_read_the_store(demo_store):
    process, url = _start_view("--store", demo_store.root, "--host", "0.0.0.0")
    try:
        assert url.startswith("http://0.0.0.0:")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "warning: listening on 0.0.0.0" in process.stderr.read()
