"""`promote --rollback` only returns to a model that is still there and finished: a pointer
to a missing or half-written folder would make every later `init: promoted` retrain fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.read import Store
from tests.trainers.test_registry import make_model
from trainers.registry import ModelRegistry


def _break_gone(folder: Path) -> None:
    shutil.rmtree(folder)


def _break_unfinished(folder: Path) -> None:
    run = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**run, "status": "training"}))


def _break_torn(folder: Path) -> None:
    (folder / "run.json").write_text('{"run_id": "a", "stat')


@pytest.mark.parametrize("damage", [_break_gone, _break_unfinished, _break_torn])
def test_rollback_to_a_missing_or_incomplete_model_is_refused_in_one_line_and_keeps_the_pointer(
    tmp_path: Path, damage
) -> None:
    for name in ("a", "b"):
        make_model(tmp_path, name)
    registry = ModelRegistry(Store(str(tmp_path), "ds"))
    registry.promote("a", "first")
    registry.promote("b", "second")
    damage(tmp_path / "ds" / "models" / "a")

    out = CliRunner().invoke(app, ["promote", "ds", "--rollback", "--store", str(tmp_path)])

    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [out.output.strip()]  # one line, no traceback
    assert "cannot roll back to a" in out.output
    pointer = registry.pointer()
    assert (pointer.model_id, pointer.generation) == ("b", 2)  # nothing lost, nothing changed
    assert registry.promoted().id == "b"
