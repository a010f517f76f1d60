"""The reliability suite's tools: a tiny corpus, the CLI in-process and as a process, and
what a store holds (ids by multiset, versions that verify).

Runs in-process share the session Ray (cheap); the fault tests that must kill a driver run
`python -m pipeline.cli` as a child process with its own embedded Ray, and are few.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.read import Store
from pipeline.store.shards import read_shard_batches
from pipeline.store.verify import verify_version
from tests.pipeline.execution.datajob_corpus import recipe_dict as base_recipe_dict
from tests.pipeline.execution.datajob_corpus import write_corpus

ROOT = Path(__file__).resolve().parents[2]
NAME = "tiny"
# The corpus: 24 originals, 2 exact duplicates, 2 records quarantined (missing, corrupt media).
ORIGINALS = 24


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.reliability)


def recipe_dict(**overrides: Any) -> dict[str, Any]:
    """Return the suite's recipe over the tiny corpus (store and cards inside its folder):
    the data-job tests' recipe, with room for the two records the corpus quarantines."""
    return base_recipe_dict(**{"name": NAME, "max_bad_fraction": 0.2, **overrides})


def write_recipe(folder: Path, **overrides: Any) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(**overrides)), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder holding the tiny corpus and its recipe; return the recipe path."""
    write_corpus(tmp_path)
    return write_recipe(tmp_path)


def cli(*args: str) -> Any:
    """Run the CLI in this process (the session Ray); return typer's result."""
    return CliRunner().invoke(app, [str(a) for a in args])


def run_json(recipe: Path) -> dict[str, Any]:
    """Run a recipe in-process; return its --json object (asserting it exited 0)."""
    result = cli("run", recipe, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        PYTHONPATH=str(ROOT),
        ROLEFORGE_OBJECT_STORE_MB="96",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def cli_process(*args: str, **env: str) -> subprocess.Popen[bytes]:
    """Start `python -m pipeline.cli ARGS` as a child process with its own embedded Ray."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        cwd=ROOT,
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a signal sent to it reaches the whole tree only if asked
    )


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def store_of(recipe: Path) -> Store:
    return Store(str(recipe.parent / "store"), NAME)


def ids_of(store: Store, version: int | None = None) -> Counter[str]:
    """Return the multiset of record ids in a committed version's shards."""
    manifest = store.manifest(version)
    ids: Counter[str] = Counter()
    for path in store.shard_paths(manifest):
        for batch in read_shard_batches(path):
            ids.update(pa.Table.from_batches([batch])["id"].to_pylist())
    return ids


def all_versions_intact(store: Store) -> list[int]:
    """Assert every committed version verifies; return their numbers."""
    for version in store.versions():
        report = verify_version(store, version)
        assert report.ok, report.to_dict()
    return store.versions()


@pytest.fixture(scope="session")
def fault_free(tmp_path_factory: pytest.TempPathFactory, ray_session: Any) -> dict[str, Any]:
    """The --json result and id multiset of a fault-free run of the tiny corpus."""
    folder = tmp_path_factory.mktemp("fault-free")
    write_corpus(folder)
    recipe = write_recipe(folder)
    result = run_json(recipe)
    return {**result, "ids": ids_of(store_of(recipe)), "store": str(recipe.parent / "store")}


def leftovers(store: Store) -> list[str]:
    """Return what a store holds besides committed versions, their files and quarantine."""
    from pipeline.store.gc import unreferenced_paths

    return [os.path.relpath(p, store.root) for p in unreferenced_paths(store)]
