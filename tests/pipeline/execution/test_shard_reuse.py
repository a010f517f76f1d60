"""A new version takes its parent's shards whose rows did not change (hard links on local
disk) and writes only the rest; its content id equals a run's from scratch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline.execution.job import DataJob, RunResult
from pipeline.store.diff import diff_versions, summarize_against_parent
from pipeline.store.read import Store
from pipeline.store.verify import verify_version
from tests.pipeline.execution.datajob_corpus import make_recipe, write_corpus

# Small shards, so a split has several and most of them hold no record that changed.
SMALL_SHARDS = {"shard_size": "2KB", "format": "arrow"}


def _run(corpus: Path, store: str, **overrides: Any) -> RunResult:
    recipe = make_recipe(
        corpus, store=store, cards_dir=f"{store}-cards", output=SMALL_SHARDS, **overrides
    )
    return DataJob(recipe).run()


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """v1 of the corpus, v2 after three records were added, and a run from scratch of v2's."""
    folder = tmp_path_factory.mktemp("reuse")
    write_corpus(folder)
    v1 = _run(folder, "store")
    write_corpus(folder, extra=3)
    v2 = _run(folder, "store")
    scratch = _run(folder, "scratch")
    return {"folder": folder, "v1": v1, "v2": v2, "scratch": scratch}


def _inodes(result: RunResult) -> dict[int, str]:
    manifest = Store(str(Path(result.path).parents[2]), result.name).manifest(result.version)
    return {os.stat(os.path.join(result.path, s.path)).st_ino: s.path for s in manifest.shards}


def test_a_rerun_links_the_parents_unchanged_shards_and_equals_a_run_from_scratch(grown) -> None:
    v1, v2, scratch = grown["v1"], grown["v2"], grown["scratch"]
    assert v2.version == 2 and v2.content_id == scratch.content_id != v1.content_id
    shared = _inodes(v1).keys() & _inodes(v2).keys()
    assert shared, "no shard of v1 was reused"
    assert len(shared) < len(_inodes(v2))  # the new records' rows went into new shards
    store = Store(str(Path(v2.path).parents[2]), v2.name)
    assert verify_version(store, 1).ok and verify_version(store, 2).ok
    # The card's diff, which reads only the shards the versions do not share, says what a
    # diff reading every shard says.
    m1, m2 = store.manifest(1), store.manifest(2)
    summary = summarize_against_parent(m1, v1.path, m2, v2.path)
    assert summary == diff_versions(store, 1, 2).summary()
    assert summary["added"] >= 3


def test_verify_names_a_row_changed_in_a_reused_shard(grown) -> None:
    v1, v2 = grown["v1"], grown["v2"]
    before = _inodes(v1)
    inode, name = sorted((i, p) for i, p in _inodes(v2).items() if i in before)[0]
    path = os.path.join(v2.path, name)
    with open(path, "rb") as f:  # in memory, not mapped: the file is written below
        table = pa.ipc.open_stream(f.read()).read_all()
    changed_id = table["id"][0].as_py()
    column = table.schema.get_field_index("source")
    edited = table.set_column(
        column,
        "source",
        pc.if_else(pc.equal(table["id"], changed_id), "elsewhere", table["source"]),
    )
    # Written into the file in place (the same inode): what corrupting a shared file does.
    with open(path, "r+b") as f, pa.ipc.new_stream(f, table.schema) as writer:
        writer.write_table(edited)
    assert os.stat(path).st_ino == inode
    store = Store(str(Path(v2.path).parents[2]), v2.name)
    report = verify_version(store, 2)
    assert f"{name}#{changed_id}" in {p.path for p in report.problems if p.problem == "row"}
