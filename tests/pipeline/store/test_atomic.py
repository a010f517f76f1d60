"""The commit toolkit the store and the registry share: atomic replace, the lock, faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.store.atomic import (
    FAULT_ENV,
    InjectedFault,
    fault_point,
    replace_file,
    stale_temp_files,
)
from pipeline.store.lock import StoreBusy, file_lock

ROOT = Path(__file__).resolve().parents[3]


def test_replace_file_leaves_the_new_content_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "POINTER"
    target.write_bytes(b"old")
    replace_file(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert stale_temp_files(str(target)) == []


@pytest.mark.parametrize("step", ["temp_written", "replaced", "synced"])
def test_a_fault_at_each_replace_step_leaves_the_old_or_the_new_file_whole(
    tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "POINTER"
    target.write_bytes(b"old")
    monkeypatch.setenv(FAULT_ENV, f"x_{step}")
    with pytest.raises(InjectedFault):
        replace_file(str(target), b"new", steps="x")
    assert target.read_bytes() == (b"old" if step == "temp_written" else b"new")
    assert len(stale_temp_files(str(target))) == (1 if step == "temp_written" else 0)


def test_a_fault_point_not_named_does_nothing_and_kill_syntax_sigkills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "elsewhere")
    fault_point("here")
    code = "from pipeline.store.atomic import fault_point; fault_point('here'); print('alive')"
    env = {**os.environ, FAULT_ENV: "kill:here"}
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=False
    )
    assert child.returncode == -9 and b"alive" not in child.stdout


def test_a_file_lock_held_elsewhere_makes_the_second_holder_give_up_with_store_busy(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "locks" / "x.lock")
    with file_lock(path, 1.0, "busy"):
        with pytest.raises(StoreBusy, match="busy"), file_lock(path, 0.0, "busy"):
            pass
    with file_lock(path, 0.0, "busy"):  # released when the first holder left
        pass
