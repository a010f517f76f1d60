"""gc during runs and commits: it never removes what a live run or a committed manifest
references, never crashes a run, and by default spares anything recent."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.store.fs import LocalFS
from pipeline.store.gc import collect_garbage
from pipeline.store.read import Store
from tests.reliability.conftest import (
    NAME,
    ROOT,
    all_versions_intact,
    child_env,
    cli,
    cli_process,
    ids_of,
    store_of,
    wait_for,
)
from tests.reliability.test_concurrency import _stage

LEASE_HOLDER = """
import os, sys, time
from pipeline.store.lock import RunLease
root, run_id = sys.argv[1:3]
lease = RunLease(root, run_id).acquire()
os.makedirs(os.path.join(root, "_staging", run_id, "ingest"), exist_ok=True)
os.makedirs(os.path.join(root, "quarantine"), exist_ok=True)
open(os.path.join(root, "quarantine", run_id + ".jsonl"), "w").write("{}\\n")
print("ready", flush=True)
time.sleep(600)
"""


def test_gc_spares_a_live_run_and_collects_it_once_its_process_is_killed(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"), NAME)
    holder = subprocess.Popen(
        [sys.executable, "-c", LEASE_HOLDER, store.root, "run-live"],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
        report = collect_garbage(store, LocalFS(), min_age_s=0)
        assert report.removed == []
        assert (Path(store.root) / "_staging" / "run-live").is_dir()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the dead run's lease: everything it left is garbage now.
    removed = collect_garbage(store, LocalFS(), min_age_s=0).removed
    assert sorted(removed) == [
        "_locks/run-run-live.lock",
        "_staging/run-live",
        "quarantine/run-live.jsonl",
    ]


def test_gc_waits_for_a_commit_in_progress_and_the_version_stays_whole(tmp_path: Path) -> None:
    from pipeline.store.commit import VersionCommitter
    from pipeline.store.manifest import Manifest

    staged, manifest_path = _stage(tmp_path, "r1", 6)
    manifest = Manifest.read(str(manifest_path))
    store = Store(str(tmp_path / "store"), "ds")
    in_cards = threading.Event()

    def slow_cards(vdir, m, parent, diff, fs=None):
        in_cards.set()
        time.sleep(1.0)  # v1/ exists, its manifest does not yet
        Path(vdir, "README.md").write_text("card")
        return ["README.md"]

    committer = VersionCommitter(store, LocalFS(), write_cards=slow_cards)
    thread = threading.Thread(target=committer.commit, args=(staged, manifest))
    thread.start()
    assert in_cards.wait(30)
    report = collect_garbage(store, LocalFS(), min_age_s=0)  # blocks until the commit is done
    thread.join(30)
    assert "versions/v1" not in report.removed
    assert all_versions_intact(store) == [1]


def test_gc_by_default_spares_a_fresh_orphan_and_removes_it_when_told(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"), NAME)
    orphan = Path(store.root) / "_staging" / "crashed-run"
    orphan.mkdir(parents=True)
    assert cli("gc", NAME, "--store", tmp_path / "store").exit_code == 0
    assert orphan.exists()
    done = cli("gc", NAME, "--store", tmp_path / "store", "--min-age", "0", "--json")
    assert json.loads(done.stdout)["removed"] == ["_staging/crashed-run"]
    assert not orphan.exists()


def test_gc_refuses_a_dataset_name_that_leaves_the_store(tmp_path: Path) -> None:
    for name in ("..", ".", "../x", "/etc"):
        result = cli("gc", name, "--store", tmp_path / "store", "--min-age", "0")
        assert result.exit_code == 1, result.output
        assert result.output.startswith("error: dataset name") and result.output.count("\n") == 1
    assert not (tmp_path / "versions").exists()


@pytest.mark.usefixtures("ray_session")
def test_gc_again_and_again_during_a_run_neither_crashes_it_nor_loses_a_record(
    corpus: Path, fault_free
) -> None:
    store = store_of(corpus)
    run = cli_process("run", corpus, "--json")
    staging = Path(store.root) / "_staging"
    rounds = 0
    while run.poll() is None:
        if staging.exists():
            assert (
                cli("gc", NAME, "--store", corpus.parent / "store", "--min-age", "0").exit_code == 0
            )
            rounds += 1
        time.sleep(0.2)
    out, err = run.communicate()
    assert run.returncode == 0, err.decode()[-2000:]
    assert rounds > 0
    assert json.loads(out)["content_id"] == fault_free["content_id"]
    assert all_versions_intact(store) == [1]
    assert ids_of(store) == fault_free["ids"]
    wait_for(lambda: not staging.exists() or not any(staging.iterdir()), 5, "staging removed")
