"""gc and model folders: runs that never finished and retrains killed before their
comparison go (once older than --min-age); the promoted model never; models promoted once
only with --models-history; finished models that are results stay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.read import Store
from tests.pipeline.execution.datajob_corpus import write_corpus
from tests.pipeline.execution.test_retrain import _recipe
from tests.reliability.conftest import ROOT, all_versions_intact, child_env, cli_process
from tests.trainers.test_registry import make_model
from trainers.pending import PENDING_DIR
from trainers.registry import ModelRegistry

DAY = 86400


def _age(path: Path, seconds: float) -> None:
    """Set the mtime of `path` and everything under it `seconds` into the past."""
    then = time.time() - seconds
    for folder, _dirs, files in os.walk(path):
        for name in files:
            os.utime(os.path.join(folder, name), (then, then))
        os.utime(folder, (then, then))


def _gc(store: Path, *args: str) -> list[str]:
    out = CliRunner().invoke(app, ["gc", "ds", "--store", str(store), "--json", *args])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["removed"]


def _listed(store: Path) -> dict[str, bool]:
    """Return each listed model's `comparable` flag."""
    out = CliRunner().invoke(app, ["models", "ds", "--store", str(store), "--json"])
    assert out.exit_code == 0, out.output
    return {m["id"]: m["comparable"] for m in json.loads(out.stdout)["models"]}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Models a, b (promoted once each, b now), c (finished, never promoted), an unfinished
    run `killed` with a checkpoint, and `fresh`, unfinished but recent; all but `fresh` old."""
    for name in ("a", "b", "c"):
        make_model(tmp_path, name)
    make_model(tmp_path, "killed", status="training")
    (tmp_path / "ds" / "models" / "killed" / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    registry = ModelRegistry(Store(str(tmp_path), "ds"))
    registry.promote("a", "first")
    registry.promote("b", "second")
    _age(tmp_path / "ds" / "models", DAY)
    make_model(tmp_path, "fresh", status="training")
    return tmp_path


def test_gc_removes_old_unfinished_runs_and_keeps_results_and_the_promoted_model(
    store: Path,
) -> None:
    assert _gc(store, "--dry-run") == ["models/killed"]
    assert (store / "ds" / "models" / "killed").is_dir()  # a dry run removes nothing

    assert _gc(store) == ["models/killed"]

    left = sorted(os.listdir(store / "ds" / "models"))
    assert [n for n in left if not n.startswith("PROMOTED")] == ["a", "b", "c", "fresh"]
    assert ModelRegistry(Store(str(store), "ds")).promoted().id == "b"
    assert _gc(store, "--min-age", "0") == ["models/fresh"]  # its age was all that spared it


def test_models_promoted_once_go_only_with_the_history_flag_and_never_the_promoted_one(
    store: Path,
) -> None:
    _gc(store)
    assert _gc(store, "--models-history") == ["models/a"]
    registry = ModelRegistry(Store(str(store), "ds"))
    assert registry.promoted().id == "b"
    assert sorted(e.id for e in registry.models()) == ["b", "c"]
    # Rollback now has nowhere to go, and says so instead of pointing at nothing.
    out = CliRunner().invoke(app, ["promote", "ds", "--rollback", "--store", str(store)])
    assert out.exit_code == 1 and "cannot roll back to a" in out.output


def test_a_model_whose_retrain_died_before_comparing_is_marked_and_gc_removes_it(
    store: Path,
) -> None:
    make_model(store, "orphan")  # finished: its retrain wrote status done, then died
    marker = store / "ds" / "models" / PENDING_DIR / "orphan"
    marker.parent.mkdir()
    marker.write_bytes(b"")
    _age(store / "ds" / "models" / "orphan", DAY)
    _age(marker.parent, DAY)

    assert _listed(store) == {"a": True, "b": True, "c": True, "orphan": False}
    table = CliRunner().invoke(app, ["models", "ds", "--store", str(store)])
    assert "! never compared" in table.stdout

    assert _gc(store) == ["models/.uncompared/orphan", "models/killed", "models/orphan"]
    assert _listed(store) == {"a": True, "b": True, "c": True}


LIVE_RETRAIN = """
import sys, time
from pipeline.store.read import Store
from trainers.pending import comparison_pending
with comparison_pending(Store(sys.argv[1], "ds"), "live"):
    print("ready", flush=True)
    time.sleep(600)
"""


def test_gc_spares_a_retrain_in_flight_however_old_its_files(store: Path) -> None:
    make_model(store, "live", status="training")
    _age(store / "ds" / "models" / "live", DAY)
    holder = subprocess.Popen(
        [sys.executable, "-c", LIVE_RETRAIN, str(store)],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
        assert _gc(store, "--min-age", "0") == ["models/fresh", "models/killed"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    removed = _gc(store, "--min-age", "0")
    assert "models/live" in removed and "models/.uncompared/live" in removed


def test_a_retrain_killed_inside_its_comparison_leaves_a_marked_model_gc_clears(
    tmp_path: Path, ray_session
) -> None:
    write_corpus(tmp_path)
    recipe = _recipe(tmp_path, "retrain.yaml")
    # Killed while it holds the promotion lock: trained and done, never compared to the end.
    run = cli_process("retrain", recipe, "--json", ROLEFORGE_FAULT="kill:promote_locked")
    _out, err = run.communicate(timeout=600)
    assert run.returncode == -signal.SIGKILL, err.decode(errors="replace")[-2000:]

    store = Store(str(tmp_path / "store"), "tiny")
    registry = ModelRegistry(store)
    [model] = registry.models()
    assert model.uncompared and registry.pointer() is None
    assert not os.path.exists(os.path.join(model.path, "report.json"))
    assert all_versions_intact(store) == [1]  # the data job's version is whole

    removed = CliRunner().invoke(
        app, ["gc", "tiny", "--store", str(tmp_path / "store"), "--min-age", "0", "--json"]
    )
    assert removed.exit_code == 0, removed.output
    assert f"models/{model.id}" in json.loads(removed.stdout)["removed"]
    assert registry.models() == [] and all_versions_intact(store) == [1]
