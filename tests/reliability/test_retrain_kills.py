"""A retrain killed during training, or right after it swapped the promotion pointer: the
dataset version stays whole, the pointer names a finished model (or none), gc clears what
the kill left, and the next retrain runs to its decision."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.read import Store
from tests.pipeline.execution.datajob_corpus import write_corpus
from tests.pipeline.execution.test_retrain import _recipe
from tests.reliability.conftest import all_versions_intact, cli_process, wait_for
from trainers.registry import ModelRegistry

pytestmark = pytest.mark.usefixtures("ray_session")


def _training(models: Path) -> bool:
    """True once some run folder's run.json says `training`."""
    for run in models.glob("*/run.json"):
        try:
            if json.loads(run.read_text()).get("status") == "training":
                return True
        except (OSError, ValueError):
            continue
    return False


def _pointer_is_sound(registry: ModelRegistry) -> None:
    pointer = registry.pointer()
    if pointer is not None:
        assert registry.get(pointer.model_id).id == pointer.model_id  # finished and there


@pytest.mark.parametrize("when", ["training", "after the pointer swap"])
def test_a_killed_retrain_loses_nothing_and_the_next_one_decides(tmp_path: Path, when: str) -> None:
    write_corpus(tmp_path)
    recipe = _recipe(tmp_path, "retrain.yaml")
    store = Store(str(tmp_path / "store"), "tiny")
    registry = ModelRegistry(store)
    if when == "training":
        run = cli_process("retrain", recipe, "--json")
        wait_for(
            lambda: _training(Path(store.root) / "models") or run.poll() is not None,
            300,
            "training to start",
        )
        os.killpg(run.pid, signal.SIGKILL)
    else:
        run = cli_process("retrain", recipe, "--json", ROLEFORGE_FAULT="kill:promote_replaced")
    _out, err = run.communicate(timeout=600)
    assert run.returncode == -signal.SIGKILL, err.decode(errors="replace")[-2000:]

    assert all_versions_intact(store) == [1]  # 0 lost, 0 corrupt
    _pointer_is_sound(registry)
    if when == "training":
        assert registry.pointer() is None and registry.models() == []
    else:
        promoted = registry.promoted()  # the swap is the decision: it stands, report or not
        assert promoted is not None and not promoted.uncompared

    gc = CliRunner().invoke(app, ["gc", "tiny", "--store", str(tmp_path / "store"), "--json"])
    assert gc.exit_code == 0, gc.output
    gc = CliRunner().invoke(
        app, ["gc", "tiny", "--store", str(tmp_path / "store"), "--min-age", "0", "--json"]
    )
    removed = json.loads(gc.stdout)["removed"]
    folders = [p for p in removed if p.startswith("models/") and "/." not in p]
    assert len(folders) == (1 if when == "training" else 0), removed  # never the promoted one
    _pointer_is_sound(registry)

    again = CliRunner().invoke(app, ["retrain", str(recipe), "--json"])
    assert again.exit_code in (0, 4), again.output
    assert all_versions_intact(store) == [1]
    _pointer_is_sound(registry)
    assert registry.pointer() is not None
    assert all(not m.uncompared for m in registry.models())
