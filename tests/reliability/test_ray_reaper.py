"""A driver killed on its own (`kill -9 PID`, the OOM killer) takes its embedded Ray with it:
the reaper it started kills every Ray process (raylet, GCS, dashboard, runtime-env agent,
workers) once the driver's pipe closes, instead of Ray's own minute-long timeouts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.pipeline.execution.datajob_corpus import write_corpus
from tests.reliability.conftest import (
    all_versions_intact,
    cli_process,
    store_of,
    wait_for,
    write_recipe,
)

pytestmark = pytest.mark.usefixtures("ray_session")


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

    assert _alive(ray) == []
    assert all_versions_intact(store_of(corpus)) == []  # nothing half-published
