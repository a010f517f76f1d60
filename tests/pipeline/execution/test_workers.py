"""Ray workers retired after the record pass: they exit, and the next tasks get fresh ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipeline.execution.cluster import _alive, retire_idle_workers
from pipeline.execution.job import DataJob
from tests.pipeline.execution.datajob_corpus import make_recipe, write_corpus


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


@pytest.mark.parametrize("fresh", [True, False])
def test_a_record_pass_on_ray_retires_its_workers_unless_the_recipe_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_session, fresh: bool
) -> None:
    import pipeline.execution.cluster as cluster

    retired: list[list[tuple[str, int]]] = []
    retire = cluster.retire_idle_workers
    monkeypatch.setattr(cluster, "retire_idle_workers", lambda: retired.append(retire()))
    write_corpus(tmp_path)
    execution = {"in_process_records": 0, "fresh_write_workers": fresh}
    recipe = make_recipe(tmp_path, store="store", cards_dir="store-cards", execution=execution)
    result = DataJob(recipe).run()
    assert result.counts["write"]["out"] > 0
    assert len(retired) == (1 if fresh else 0)
    if fresh:
        assert len(retired[0]) == 2  # both CPUs' workers


def _hold_cpu(marker: str, seconds: float) -> int:
    open(marker, "w").close()
    time.sleep(seconds)
    return os.getpid()


def test_a_cpu_held_by_other_work_is_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_session
) -> None:
    import pipeline.execution.cluster as cluster

    ray = ray_session
    monkeypatch.setattr(cluster, "RETIRE_WAIT_S", 1.0)
    marker = tmp_path / "started"
    busy = ray.remote(num_cpus=1)(_hold_cpu).remote(str(marker), 8.0)
    deadline = time.monotonic() + 60
    while not marker.exists():  # the busy task holds its CPU before the retire starts
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    retired = retire_idle_workers()
    assert time.monotonic() - started < 5  # not the 8 s the busy task holds its CPU
    # One worker retired; the second retire task may get the CPU the first freed within
    # the wait (then it retires a fresh worker there), never the busy one's.
    assert 1 <= len(retired) <= 2
    assert ray.get(busy) not in {pid for _, pid in retired}


def test_every_worker_of_a_session_starts_with_the_collectors_worker_thresholds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc
    import importlib

    import ray

    from pipeline.execution import cluster
    from pipeline.execution.worker_setup import WORKER_GC_THRESHOLDS

    started: dict = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.update(kwargs))
    monkeypatch.setattr(cluster, "watch_driver", lambda: None)
    monkeypatch.setattr(cluster, "_REAPER", None, raising=False)
    cluster.ensure_ray()
    # Ray imports the hook by its dotted name in each worker it starts, before any task.
    module, name = started["runtime_env"]["worker_process_setup_hook"].rsplit(".", 1)
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        getattr(importlib.import_module(module), name)()
        assert gc.get_threshold() == WORKER_GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
