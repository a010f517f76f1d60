"""Concurrent writers: four processes commit at the same moment. The same content ends as
one version (the rest `unchanged`); different content ends as a linear chain in which every
version's parent is the version before it. Nothing is lost, nothing is half-published."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.record.schema import RECORD_SCHEMA
from pipeline.store.fs import LocalFS
from pipeline.store.gc import collect_garbage
from pipeline.store.manifest import schema_sha256
from pipeline.store.read import Store
from pipeline.store.writer import ShardWriter
from tests.fixtures.manifest import manifest_of, staged_content_id
from tests.pipeline.execution.datajob_corpus import stage_records, work_record
from tests.reliability.conftest import ROOT, all_versions_intact, child_env

WRITERS = 4
# A child commits its staged folder once the go file appears, so all four start together;
# a slow card writer widens the window in which they overlap.
CHILD = """
import json, os, sys, time
from pipeline.store.commit import VersionCommitter
from pipeline.store.fs import LocalFS
from pipeline.store.read import Store

store_uri, staged, manifest_path, go = sys.argv[1:5]
from pipeline.store.manifest import Manifest
manifest = Manifest.read(manifest_path)

def cards(vdir, m, parent, diff, fs=None):
    time.sleep(0.2)
    open(os.path.join(vdir, "README.md"), "w").write(m.content_id)
    return ["README.md"]

while not os.path.exists(go):
    time.sleep(0.005)
result = VersionCommitter(Store(store_uri, "ds"), LocalFS(), write_cards=cards).commit(staged, manifest)
print(json.dumps({"version": result.version, "unchanged": result.unchanged}))
"""


def _stage(root: Path, run: str, n: int) -> tuple[str, Path]:
    records = [work_record(i) for i in range(n)]
    for i, r in enumerate(records):
        r["split"] = ("train", "validation", "test")[i % 3]
    parts, index = stage_records(root / "parts" / run, records, rows_per_part=4)
    staged = str(root / "store" / "ds" / "_staging" / run / "version")
    shards = ShardWriter(staged, "arrow", 1 << 30, LocalFS()).write(index, parts)
    schema_hash = schema_sha256(RECORD_SCHEMA)
    manifest = manifest_of(
        "ds",
        shards,
        run_id=run,
        recipe={"license": None, "sources": []},
        schema_sha256=schema_hash,
        content_id=staged_content_id(staged, shards, schema_hash),
    )
    path = root / f"{run}.json"
    path.write_bytes(manifest.to_json_bytes())
    return staged, path


def _race(tmp_path: Path, sizes: list[int]) -> list[dict[str, Any]]:
    go = tmp_path / "go"
    children = []
    for i, n in enumerate(sizes):
        staged, manifest = _stage(tmp_path, f"run{i}", n)
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(tmp_path / "store"),
                    staged,
                    str(manifest),
                    str(go),
                ],
                cwd=ROOT,
                env=child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    time.sleep(1.0)  # every child is waiting on the go file
    go.touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
        results.append(json.loads(out))
    return results


@pytest.mark.parametrize("trial", range(2))
def test_four_writers_of_the_same_content_publish_one_version(tmp_path: Path, trial: int) -> None:
    results = _race(tmp_path, [9] * WRITERS)
    store = Store(str(tmp_path / "store"), "ds")
    assert all_versions_intact(store) == [1]
    assert sorted(r["unchanged"] for r in results) == [False] + [True] * (WRITERS - 1)
    assert {r["version"] for r in results} == {1}
    assert store.manifest(1).parent_version is None
    # The losers' staged folders are garbage; gc takes them and leaves v1 whole.
    collect_garbage(store, LocalFS(), min_age_s=0)
    assert all_versions_intact(store) == [1]


def test_four_writers_of_different_content_publish_a_linear_chain(tmp_path: Path) -> None:
    results = _race(tmp_path, [6, 7, 8, 9])
    store = Store(str(tmp_path / "store"), "ds")
    assert all_versions_intact(store) == [1, 2, 3, 4]
    assert sorted(r["version"] for r in results) == [1, 2, 3, 4]
    assert not any(r["unchanged"] for r in results)
    parents = {v: store.manifest(v).parent_version for v in store.versions()}
    assert parents == {1: None, 2: 1, 3: 2, 4: 3}
    contents = {store.manifest(v).content_id for v in store.versions()}
    assert len(contents) == WRITERS
