"""Ray workers retired after the record pass: they exit, and the next tasks get fresh ones."""

from __future__ import annotations

import os
import time

from pipeline.execution.cluster import _alive, retire_idle_workers


def _pid() -> int:
    time.sleep(0.2)  # both CPUs busy at once: two workers
    return os.getpid()


def test_retired_workers_are_gone_when_it_returns_and_the_next_tasks_get_fresh_ones(
    ray_session,
) -> None:
    ray = ray_session
    remote = ray.remote(num_cpus=1)(_pid)
    ray.get([remote.remote() for _ in range(2)])
    retired = retire_idle_workers()
    assert len(retired) == 2  # one per CPU
    here = ray.get_runtime_context().get_node_id()
    pids = {pid for node, pid in retired}
    assert all(node == here for node, _ in retired)
    assert not any(_alive(pid) for pid in pids)
    after = set(ray.get([remote.remote() for _ in range(2)]))
    assert not after & pids


def test_a_process_that_ended_is_not_alive() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert _alive(os.getpid())
    child.wait()
    assert not _alive(child.pid)
