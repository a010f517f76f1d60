"""Faults: the driver killed at augment, after the shards are written and inside the commit;
Ctrl-C and SIGTERM; Ray workers killed mid-augment; a full disk. Afterwards only complete
versions are visible, gc removes every orphan and nothing else, and a rerun publishes the
fault-free content_id with every id exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from pipeline.store.fs import LocalFS
from pipeline.store.gc import collect_garbage
from tests.reliability.conftest import (
    all_versions_intact,
    cli_process,
    ids_of,
    leftovers,
    run_json,
    store_of,
    wait_for,
    write_recipe,
)

pytestmark = pytest.mark.usefixtures("ray_session")


def _augmenting(store_root: Path) -> bool:
    """True once a record-pass task has written its part (into the record cache)."""
    parts = store_root / "cache" / "parts"
    return parts.exists() and any(p.suffix == ".arrow" for p in parts.iterdir())


def _assert_recovers(recipe: Path, fault_free) -> None:
    store = store_of(recipe)
    visible = all_versions_intact(store)  # only complete versions are visible
    assert visible == [], visible
    removed = collect_garbage(store, LocalFS(), min_age_s=0).removed
    assert leftovers(store) == []
    assert all(not p.startswith("models") for p in removed)
    rerun = run_json(recipe)
    assert rerun["content_id"] == fault_free["content_id"]
    assert ids_of(store) == fault_free["ids"]  # every id exactly once
    assert all_versions_intact(store) == [1]


def _finish(run: subprocess.Popen[bytes]) -> tuple[int, str]:
    _out, err = run.communicate(timeout=300)
    return run.returncode, err.decode(errors="replace")


@pytest.mark.parametrize(
    "how",
    ["SIGKILL at augment", "SIGKILL after the shards are written", "SIGKILL before the manifest"],
)
def test_a_killed_driver_leaves_only_complete_versions_and_a_rerun_converges(
    corpus: Path, fault_free, how: str
) -> None:
    root = Path(store_of(corpus).root)
    if how == "SIGKILL at augment":
        run = cli_process("run", corpus, "--json")
        wait_for(lambda: _augmenting(root) or run.poll() is not None, 240, "augment to start")
        os.killpg(run.pid, signal.SIGKILL)
    else:
        point = "after_staging" if "shards" in how else "before_manifest"
        run = cli_process("run", corpus, "--json", ROLEFORGE_FAULT=f"kill:{point}")
    code, err = _finish(run)
    assert code == -signal.SIGKILL, err[-2000:]
    _assert_recovers(corpus, fault_free)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_during_a_run_publishes_nothing_and_says_so(
    corpus: Path, fault_free, sig: signal.Signals
) -> None:
    root = Path(store_of(corpus).root)
    run = cli_process("run", corpus, "--json")
    wait_for(lambda: _augmenting(root) or run.poll() is not None, 240, "augment to start")
    os.killpg(run.pid, sig)  # like Ctrl-C in a terminal: the whole process group
    code, err = _finish(run)
    assert code != 0, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    _assert_recovers(corpus, fault_free)


def _ray_workers_running(name: str) -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::") and name in cmd:
            pids.append(proc.info["pid"])
    return pids


@pytest.mark.parametrize("kills", [1, 3])
def test_killed_workers_mid_augment_change_nothing(tmp_path: Path, fault_free, kills: int) -> None:
    from tests.pipeline.execution.datajob_corpus import write_corpus

    write_corpus(tmp_path)
    # On Ray whatever the corpus's size: the workers are what this test kills.
    recipe = write_recipe(tmp_path, execution={"batch_size": 1, "in_process_records": 0})
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and len(killed) < kills:
            for pid in _ray_workers_running("record_pass"):
                if pid not in killed and len(killed) < kills:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                    except ProcessLookupError:
                        pass
            stop.wait(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = run_json(recipe)
    finally:
        stop.set()
        thread.join()
    assert len(killed) == kills, f"only {len(killed)} workers were caught mid-augment"
    assert result["content_id"] == fault_free["content_id"]
    assert ids_of(store_of(recipe)) == fault_free["ids"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_a_full_disk_ends_the_run_with_one_line_and_publishes_nothing(tmp_path: Path) -> None:
    from tests.pipeline.execution.datajob_corpus import write_corpus

    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        write_corpus(tmp_path)
        recipe = write_recipe(tmp_path, store=str(mount / "store"))
        code, err = _finish(cli_process("run", recipe, "--json"))
        assert code == 1, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: ") and "No space left on device" in last, err
        assert "Traceback" not in err
        assert not (mount / "store" / "tiny" / "versions").exists() or not any(
            n.endswith(".json") for n in os.listdir(mount / "store" / "tiny" / "versions")
        )
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_ray_driver_notices_go_to_stderr_so_json_stdout_stays_pure(capsys) -> None:
    from ray._private import worker

    from pipeline.execution.cluster import ensure_ray

    ensure_ray()  # installs the redirection (the session Ray is already running)
    message = {"lines": ["A worker died or was killed while executing a task"], "pid": "raylet"}
    worker.print_to_stdstream({**message, "is_err": False}, ignore_prefix=False)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "A worker died" in captured.err
