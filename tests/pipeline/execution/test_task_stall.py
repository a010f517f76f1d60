"""A pass on Ray never waits forever: tasks that never start fail with a clear error."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from pipeline.execution import cluster
from pipeline.execution.cluster import (
    StageResources,
    StallWatch,
    TasksStalled,
    answer_within,
    run_tasks,
)
from pipeline.recipe import ExecutionConfig


def unstartable(x: int) -> int:
    """A pass's task; the tests ask for more CPUs than the cluster has, so it never runs."""
    return x


def test_a_call_stalls_only_after_the_timeout_of_idle_cpus() -> None:
    watch = StallWatch(timeout_s=60, now=0)
    assert not watch.stalled(now=59, idle=True)
    assert watch.stalled(now=60, idle=True)


def test_busy_cpus_restart_the_clock_so_a_slow_running_task_is_never_failed() -> None:
    watch = StallWatch(timeout_s=60, now=0)
    assert not watch.stalled(now=50, idle=False)  # a task of ours (or another job's) runs
    assert not watch.stalled(now=109, idle=True)
    assert watch.stalled(now=110, idle=True)


def test_a_finished_task_restarts_the_clock() -> None:
    watch = StallWatch(timeout_s=60, now=0)
    watch.progress(now=50)
    assert not watch.stalled(now=109, idle=True)
    assert watch.stalled(now=110, idle=True)


def test_a_call_ray_never_answers_fails_after_its_deadline_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As `ray.cluster_resources()` in a driver whose GCS connection a fork broke.
    monkeypatch.setattr(cluster, "_FORKS", 2)
    never = threading.Event()
    with pytest.raises(TasksStalled) as stalled:
        answer_within(0.05, "how many CPUs the cluster has", never.wait)
    message = str(stalled.value)
    assert "Ray did not answer how many CPUs the cluster has within 0.05 s" in message
    assert "forked 2 time(s)" in message


def test_an_answer_in_time_is_returned_and_an_error_raised_as_is() -> None:
    assert answer_within(5, "a sum", lambda: 1 + 1) == 2
    with pytest.raises(ZeroDivisionError):
        answer_within(5, "a quotient", lambda: 1 / 0)


def test_the_recipe_sets_the_task_timeout_of_every_pass() -> None:
    execution = ExecutionConfig(task_timeout_s=5, stages={"augment": {"num_cpus": 2}})
    assert StageResources.for_stage(execution, "augment").timeout_s == 5
    assert StageResources.for_stage(ExecutionConfig(), "ingest").timeout_s == 600


def test_tasks_that_never_start_on_an_idle_cluster_fail_naming_the_task_and_the_fork(
    ray_session: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As the at-fork hook does in a driver that forked while Ray ran (a fork here would be
    # the very hazard: the children share this session's sockets).
    monkeypatch.setattr(cluster, "_FORKS", 0)
    monkeypatch.setattr(cluster, "_FORKS_WARNED", 0)
    cluster._count_fork()
    cpus = cluster.cluster_cpus()
    resources = StageResources(batch_size=1, num_cpus=cpus + 1, concurrency=None, timeout_s=0.5)
    with caplog.at_level(logging.WARNING, logger=cluster.__name__):
        with pytest.raises(TasksStalled) as stalled:
            list(run_tasks(unstartable, [(1,), (2,)], resources))
    message = str(stalled.value)
    assert f"{__name__}.unstartable never started" in message
    assert f"{cpus} of {cpus} CPUs are free" in message
    assert "2 pending" in message
    assert "forked 1 time(s)" in message and "execution.task_timeout_s" in message
    assert "forked 1 time(s) while Ray was running" in caplog.text


def test_a_fork_before_ray_runs_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(cluster, "_FORKS", 0)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    cluster._count_fork()
    assert cluster._FORKS == 0
