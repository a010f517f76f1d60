"""A two-node Ray cluster on this machine, started with `ray start` as a real one would be.

Each node has its own temp dir and its own ports, and the cluster its own auth token, so
it shares nothing with another Ray on the machine (the test session's embedded one, other
users'). Teardown ends exactly the processes whose command line names this cluster's temp
root: `ray stop` would end every Ray process on the machine, by name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Ports each node needs besides the head's GCS port; all chosen free, none left at Ray's
# fixed defaults (8265, 10001, 52365...) where a second node or another Ray would clash.
NODE_PORT_OPTIONS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
)
HEAD_PORT_OPTIONS = ("--ray-client-server-port", "--dashboard-port")
# Cluster nodes run a Ray image without roleforge: this venv's editable install of the
# repository is hidden from every node process (sitecustomize runs after the .pth files
# that install its import finder), so only the runtime env's py_modules can supply our code.
HIDE_EDITABLE_INSTALL = """\
import sys

sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
"""
# Set for every node process, so teardown finds them all (and nothing else) by it.
CLUSTER_MARKER_ENV = "ROLEFORGE_TEST_CLUSTER"
OBJECT_STORE_BYTES = 200 * 1024 * 1024
START_TIMEOUT_S = 120
# Ray's servers take their time over SIGTERM; a throwaway cluster need not wait long.
STOP_GRACE_S = 3


class RayStartFailed(RuntimeError):
    """`ray start` could not bring a node up; the message carries its output."""


def free_ports(n: int) -> list[int]:
    """Return `n` distinct TCP ports that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def ray_binary() -> str:
    """Return the `ray` script next to this interpreter (the venv's Ray, not one on PATH)."""
    return str(Path(sys.executable).with_name("ray"))


@dataclass
class TwoNodeRayCluster:
    """A head and one worker node, each with `cpus` CPUs, under `root`.

    `env` is what a driver of this cluster needs (its auth token); `node_env` the nodes'.
    """

    root: Path
    cpus: int = 1
    address: str = ""
    dashboard_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    node_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> TwoNodeRayCluster:
        """Start both nodes and wait until the cluster sees two; raise RayStartFailed."""
        token = secrets.token_hex(32)
        # Token auth, explicitly: `ray start --head` turns it on only when it finds a token
        # (~/.ray/auth_token, say), and a worker node or an explicit-address driver never
        # turns it on alone; this token is the cluster's own.
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.env.pop("RAY_ADDRESS", None)
        site = self.root / "node-site"
        site.mkdir(parents=True, exist_ok=True)
        (site / "sitecustomize.py").write_text(HIDE_EDITABLE_INSTALL, encoding="utf-8")
        self.node_env = {**self.env, "PYTHONPATH": str(site), CLUSTER_MARKER_ENV: str(self.root)}
        ports = iter(free_ports(1 + len(HEAD_PORT_OPTIONS) + 2 * len(NODE_PORT_OPTIONS)))
        gcs = next(ports)
        head_ports = {option: next(ports) for option in (*HEAD_PORT_OPTIONS, *NODE_PORT_OPTIONS)}
        self._ray_start(
            "head",
            # The dashboard serves the state API (which node ran each task); it needs
            # ray[default] and listens on loopback only.
            ["--head", "--port", str(gcs), "--include-dashboard", "true"],
            {"--dashboard-host": "127.0.0.1", **head_ports},
        )
        self.address = f"{self._head_ip()}:{gcs}"
        self.dashboard_url = f"http://127.0.0.1:{head_ports['--dashboard-port']}"
        self._ray_start(
            "worker",
            ["--address", self.address],
            {option: next(ports) for option in NODE_PORT_OPTIONS},
        )
        self._wait_for_nodes(2)
        return self

    def _head_ip(self) -> str:
        # Ray replaces a loopback --node-ip-address by the machine's reachable address
        # (services.resolve_ip_for_localhost), so the head's address is read back.
        return (self.root / "head" / "ray_current_cluster").read_text().split(":")[0]

    def _ray_start(self, node: str, args: list[str], options: dict[str, object]) -> None:
        command = [
            ray_binary(),
            "start",
            *args,
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(self.cpus),
            "--object-store-memory",
            str(OBJECT_STORE_BYTES),
            "--temp-dir",
            str(self.root / node),
            "--disable-usage-stats",
            *(x for option, value in options.items() for x in (option, str(value))),
        ]
        try:
            done = subprocess.run(
                command,
                env=self.node_env,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            raise RayStartFailed(
                f"ray start ({node}) did not finish in {START_TIMEOUT_S} s"
            ) from exc
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise RayStartFailed(
                f"ray start ({node}) exited {done.returncode}: " + " | ".join(tail)
            )

    def _wait_for_nodes(self, n: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(alive := self.state("nodes", state="ALIVE")) < n:
            if time.monotonic() > deadline:
                raise RayStartFailed(f"{len(alive)} of {n} nodes alive after {START_TIMEOUT_S} s")
            time.sleep(0.5)

    def state(self, resource: str, **filters: str) -> list[Any]:
        """Return the cluster's state API entries of `resource` ("tasks", "nodes", "jobs")
        whose fields equal `filters`, read with this cluster's token."""
        from ray.util.state.api import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        client = StateApiClient(
            address=self.dashboard_url,
            # An explicit header: this process may hold another Ray's token (the session's).
            headers={"authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"},
        )
        return client.list(
            StateResource(resource),
            options=ListApiOptions(limit=10_000, filters=[(k, "=", v) for k, v in filters.items()]),
            raise_on_missing_output=False,
        )

    def processes(self) -> list[Any]:
        """Return this cluster's processes: those that carry its marker variable (every node
        process inherits `node_env`; the Ray client server, for one, names no path of ours)
        or name its root, and their descendants."""
        import psutil

        marker = str(self.root)
        found: dict[int, Any] = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                ours = any(marker in arg for arg in proc.info["cmdline"] or ())
                ours = ours or proc.environ().get(CLUSTER_MARKER_ENV) == marker
                if ours:
                    for p in (proc, *proc.children(recursive=True)):
                        found[p.pid] = p
            except psutil.Error:  # another user's process, or one that ended meanwhile
                pass
        return list(found.values())

    def stop(self) -> list[int]:
        """End this cluster's processes (TERM, then KILL after a grace); return the pids of
        any still there."""
        import psutil

        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=STOP_GRACE_S)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=STOP_GRACE_S)
        return [p.pid for p in self.processes()]  # a fresh look: whatever is left, by any route
