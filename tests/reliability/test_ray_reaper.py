"""A driver killed on its own (`kill -9 PID`, the OOM killer) takes its embedded Ray with it:
the reaper it started kills every Ray process (raylet, GCS, dashboard, runtime-env agent,
workers) once the driver's pipe closes, instead of Ray's own minute-long timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipeline.execution.ray_reaper import _stat, reap
from tests.pipeline.execution.datajob_corpus import write_corpus
from tests.reliability.conftest import (
    all_versions_intact,
    cli_process,
    store_of,
    wait_for,
    write_recipe,
)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """The tiny corpus with a recipe that runs every pass on Ray (it would run in-process)."""
    write_corpus(tmp_path)
    return write_recipe(tmp_path, execution={"batch_size": 4, "in_process_records": 0})


def _reaper(driver: psutil.Process) -> psutil.Process | None:
    for child in driver.children():
        try:
            if "pipeline.execution.ray_reaper" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _alive(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(p.cmdline())[:80] or p.name())
        except psutil.NoSuchProcess:
            continue
    return alive


def _left_after(alive: Callable[[], list[Any]], timeout_s: float) -> list[Any]:
    """Return what `alive()` still lists once it lists nothing or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.usefixtures("ray_session")
def test_a_driver_killed_alone_takes_its_ray_agents_and_workers_with_it(corpus: Path) -> None:
    run = cli_process("run", corpus, "--json")
    driver = psutil.Process(run.pid)
    wait_for(lambda: _reaper(driver) is not None or run.poll() is not None, 240, "Ray to start")
    reaper = _reaper(driver)
    assert reaper is not None, "the run ended before its embedded Ray started"
    ray = [p for p in driver.children(recursive=True) if p.pid != reaper.pid]
    names = " ".join(" ".join(p.cmdline()) for p in ray)
    assert "raylet" in names and "RuntimeEnvAgent" in names, names

    os.kill(run.pid, signal.SIGKILL)  # the driver alone: its process group lives on
    run.communicate(timeout=60)
    reaper.wait(timeout=120)  # it acts once the pipe from the dead driver closes

    # Killed is not yet gone: a process tears its memory down first (seconds on a busy
    # machine), against Ray's own minute-long timeouts.
    assert _left_after(lambda: _alive(ray), 30) == []
    assert all_versions_intact(store_of(corpus)) == []  # nothing half-published


def _marked(marker: str) -> list[int]:
    """Return the pids of live (not zombie) `sleep <marker>` processes."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["cmdline"] == ["sleep", marker] and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p.pid)
    return found


def test_reap_leaves_nothing_of_a_tree_that_forks_while_it_is_killed() -> None:
    # A raylet forks workers at any moment; a child forked between the walk and its
    # parent's death would be left to init. Here the parent forks as fast as it can.
    marker = f"{time.time_ns() % 10**9}.5"  # seconds for `sleep`, unique to this run
    script = "import subprocess, sys\nwhile True: subprocess.Popen(['sleep', sys.argv[1]])"
    parent = subprocess.Popen([sys.executable, "-c", script, marker])
    try:
        wait_for(lambda: len(_marked(marker)) >= 50, 60, "the tree to grow")
        reaped = reap({parent.pid: _stat(parent.pid)[1]})
        parent.wait(timeout=30)
        assert parent.pid in reaped and len(reaped) > 50
        assert _left_after(lambda: _marked(marker), 30) == []
    finally:
        parent.kill()
        for pid in _marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_without_proc_no_ray_process_is_found_and_nothing_is_watched(monkeypatch) -> None:
    # Off Linux: `stop_ray` (every command's end) and `watch_driver` must not fail.
    from pipeline.execution import ray_reaper

    monkeypatch.setattr(ray_reaper, "_PROC", "/no-such-proc")
    assert ray_reaper.ray_processes(os.getpid()) == {}
    assert ray_reaper.watch_driver() is None
