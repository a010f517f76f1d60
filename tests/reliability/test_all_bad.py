"""A run with nothing valid to publish (every record quarantined, or no record at all) ends
with one line and exit 3, and leaves nothing half-made: no version folder, no staging."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.store.read import Store
from tests.fixtures.corpus import write_jsonl
from tests.reliability.conftest import cli, leftovers, recipe_dict

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]}
NO_ASSISTANT = {"messages": [{"role": "user", "content": "anyone?"}]}


def _recipe(folder: Path) -> Path:
    data = recipe_dict(
        sources=[{"name": "s", "path": "d.jsonl"}], augment={"copies": 0}, max_bad_fraction=1.0
    )
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _half_made(store: Store) -> list[str]:
    """Return every version folder, manifest and staging folder in the store."""
    found = []
    for sub in ("versions", "_staging"):
        folder = os.path.join(store.root, sub)
        if os.path.isdir(folder):
            found.extend(f"{sub}/{n}" for n in os.listdir(folder))
    return found


@pytest.mark.parametrize(
    "lines",
    [
        [b"{not json", b"[1, 2]", NO_ASSISTANT],  # every record bad
        [],  # no record at all
    ],
    ids=["all-quarantined", "empty"],
)
def test_a_run_with_nothing_valid_exits_3_in_one_line_and_leaves_nothing_half_made(
    tmp_path: Path, ray_session: Any, lines: list[Any]
) -> None:
    write_jsonl(tmp_path / "d.jsonl", lines)
    recipe = _recipe(tmp_path)

    result = cli("run", recipe)

    assert result.exit_code == 3, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "nothing to publish" in errors[0], result.output
    assert "Traceback" not in result.output
    store = Store(str(tmp_path / "store"), "tiny")
    assert _half_made(store) == []
    assert [p for p in leftovers(store) if not p.startswith("quarantine/")] == []

    # Once a valid record arrives the next run publishes v1, not v2.
    write_jsonl(tmp_path / "d.jsonl", [*lines, GOOD])
    result = cli("run", recipe)
    assert result.exit_code == 0, result.output
    assert store.versions() == [1]
