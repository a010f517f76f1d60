"""The per-record cache: a rerun computes only the records whose key it has not seen, and
its version is byte-identical to a run from scratch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.execution.cluster import IN_PROCESS_NODE
from pipeline.execution.job import DataJob, RunResult
from pipeline.store.cache import RecordCache
from pipeline.store.fs import LocalFS
from tests.pipeline.execution.datajob_corpus import AUGMENT, make_recipe, write_corpus

pytestmark = pytest.mark.usefixtures("ray_session")


def _run(corpus: Path, store: str, **overrides: Any) -> RunResult:
    recipe = make_recipe(corpus, store=store, cards_dir=f"{store}-cards", **overrides)
    return DataJob(recipe).run()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cache-corpus")
    write_corpus(folder)
    return folder


@pytest.fixture(scope="module")
def first(corpus: Path) -> RunResult:
    return _run(corpus, "store")


def test_a_first_run_computes_every_record_and_fills_the_cache(corpus: Path, first) -> None:
    assert first.reuse is not None and first.reuse.reused == 0
    # Every record that is not a duplicate went through the record pass once.
    validate = first.counts["validate"]
    assert first.reuse.computed == validate["in"] - first.counts["dedup"]["dropped"]
    index = RecordCache(os.path.join(corpus, "store", "tiny"), LocalFS()).index()
    assert index.num_rows > 0
    assert index.filter(index["rejection"].is_valid()).num_rows == validate["quarantined"]


def test_an_unchanged_rerun_runs_no_record_task(corpus: Path, first) -> None:
    again = _run(corpus, "store")
    assert again.unchanged and again.content_id == first.content_id
    assert again.reuse is not None and again.reuse.computed == 0
    assert again.reuse.reused == first.reuse.computed
    assert "records" not in again.nodes  # no record-pass task was started
    assert again.counts == first.counts


def test_a_rerun_after_adding_records_reuses_the_rest_in_process_and_equals_a_ray_run_from_scratch(
    tmp_path: Path,
) -> None:
    write_corpus(tmp_path)
    before = _run(tmp_path, "store")
    write_corpus(tmp_path, extra=3)
    job = DataJob(make_recipe(tmp_path, store="store", cards_dir="store-cards"))
    after = job.run()
    # A few misses: every pass ran in this process, and Ray was given no task.
    assert not job.tasks.on_ray and job.tasks.ray_tasks == 0
    assert {n for counts in after.nodes.values() for n in counts} == {IN_PROCESS_NODE}
    on_ray = {"batch_size": 4, "in_process_records": 0}
    scratch = _run(tmp_path, "scratch", execution=on_ray)
    assert set(scratch.nodes["records"]) != {IN_PROCESS_NODE}
    assert after.content_id == scratch.content_id != before.content_id
    assert after.counts == scratch.counts
    assert after.reuse is not None and scratch.reuse is not None
    assert after.reuse.reused + after.reuse.computed == scratch.reuse.computed
    # The three new records, plus those that moved split: each added group moves each of
    # the two cuts by at most one rank (pipeline/stages/split.py).
    assert 3 <= after.reuse.computed <= 3 + 2 * 3
    assert after.reuse.reused >= before.reuse.computed - 2 * 3


def test_adding_image_ops_recomputes_only_records_with_images(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    _run(tmp_path, "store")
    with_images = {**AUGMENT, "image": [{"op": "HorizontalFlip", "p": 1.0}]}
    changed = _run(tmp_path, "store", augment=with_images)
    scratch = _run(tmp_path, "scratch", augment=with_images)
    assert changed.content_id == scratch.content_id
    # Train records with images are the only ones whose key names the image ops.
    rows = _train_originals_with_images(scratch)
    # (plus the corrupt record, if it was assigned to train: it has an image too)
    assert changed.reuse is not None and rows <= changed.reuse.computed <= rows + 1
    assert changed.reuse.reused == scratch.reuse.computed - changed.reuse.computed
    assert "rebase" in changed.nodes  # variants of the others took the new recipe's ids


def test_a_cache_whose_parts_are_gone_recomputes_and_still_equals_the_first_run(
    tmp_path: Path,
) -> None:
    write_corpus(tmp_path)
    first = _run(tmp_path, "store")
    shutil.rmtree(tmp_path / "store" / "tiny" / "cache" / "parts")
    # Without its versions the rerun cannot be found unchanged before any work: it must
    # go through the record pass and meet the cache's index without its parts.
    shutil.rmtree(tmp_path / "store" / "tiny" / "versions")
    again = _run(tmp_path, "store", seed=7)
    assert again.content_id == first.content_id
    # Only the cached rejection (it needs no part file) is reused; every kept record is redone.
    assert again.reuse is not None and again.reuse.reused == 1
    assert again.reuse.computed == first.reuse.computed - 1


def test_with_the_cache_off_nothing_is_kept(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    result = _run(tmp_path, "store", execution={"batch_size": 4, "cache": False})
    assert result.reuse is not None and result.reuse.reused == 0
    assert not (tmp_path / "store" / "tiny" / "cache").exists()


def _train_originals_with_images(result: RunResult) -> int:
    import pyarrow.compute as pc

    from pipeline.store.read import Store
    from pipeline.store.shards import read_shard

    store = Store(str(Path(result.path).parents[2]), result.name)
    manifest = store.manifest(result.version)
    count = 0
    for path in store.shard_paths(manifest, "train"):
        table = read_shard(path)
        originals = table.filter(pc.is_null(table["parent_id"]))
        count += int(pc.sum(pc.greater(pc.list_value_length(originals["images"]), 0)).as_py() or 0)
    return count


def test_a_source_of_many_files_is_read_by_several_tasks_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.execution.job as job

    dialogues = write_corpus(tmp_path)
    lines = dialogues.read_text().splitlines(keepends=True)
    folder = tmp_path / "dialogues"
    folder.mkdir()
    for k in range(4):
        (folder / f"part-{k}.jsonl").write_text("".join(lines[k::4]))
    dialogues.unlink()
    sources = [
        {"name": "tiny", "path": "dialogues", "characters": "characters.jsonl", "media_dir": "."}
    ]
    monkeypatch.setattr(job, "INGEST_TASKS_PER_CPU", 8)
    many = _run(tmp_path, "many", sources=sources, execution={"batch_size": 4, "cache": False})
    monkeypatch.setattr(job, "INGEST_TASKS_PER_CPU", 0)  # 0 -> one task for the source
    one = _run(tmp_path, "one", sources=sources, execution={"batch_size": 4, "cache": False})
    assert sum(many.nodes["ingest"].values()) == 4 and sum(one.nodes["ingest"].values()) == 1
    assert many.content_id == one.content_id
    assert many.counts == one.counts and many.unmapped_fields == one.unmapped_fields


def _cache_files(store_root: Path) -> set[str]:
    cache = store_root / "cache"
    return {str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()}


@pytest.mark.parametrize("change", ["seed", "records"])
def test_gc_prunes_the_cache_to_the_newest_version_and_the_next_run_reuses_as_much(
    tmp_path: Path, change: str
) -> None:
    from pipeline.store.gc import collect_garbage
    from pipeline.store.read import Store

    write_corpus(tmp_path)
    # On Ray's two CPUs: record-pass tasks of two records each, so some cache part holds
    # only records that moved split (one task of four, in-process, rarely does).
    on_ray = {"batch_size": 4, "in_process_records": 0}
    _run(tmp_path, "store", execution=on_ray)
    if change == "seed":  # the seed is in every key: v2 is made of new rows only
        seed = 8
    else:  # v2 reuses v1's rows but for the new records and those that moved split
        seed = 7
        write_corpus(tmp_path, extra=3)
    _run(tmp_path, "store", seed=seed, execution=on_ray)
    store = Store(str(tmp_path / "store"), "tiny")
    root = tmp_path / "store" / "tiny"
    shutil.copytree(tmp_path / "store", tmp_path / "kept")  # the same store, never pruned
    before = RecordCache(str(root), LocalFS()).index()
    report = collect_garbage(store, min_age_s=0)
    after = RecordCache(str(root), LocalFS()).index()
    assert 0 < after.num_rows < before.num_rows
    assert report.cache_rows_kept == after.num_rows
    assert report.cache_note == "kept what v2 was made of"
    runs = set(after["run_id"].to_pylist())
    assert runs == (
        {store.manifest(2).run_id} if change == "seed" else set(before["run_id"].to_pylist())
    )
    # Every part left is one an index row points at, and every row's part is there.
    parts = {f.removeprefix("parts/") for f in _cache_files(root) if f.startswith("parts/")}
    assert parts == set(after["part"].drop_null().to_pylist())
    assert report.freed_bytes > 0 and any(p.startswith("cache/parts/") for p in report.removed)
    # What v2 was made of is all the next run needs: the same reuse as without the prune.
    write_corpus(tmp_path, extra=6)
    pruned = _run(tmp_path, "store", seed=seed)
    kept = _run(tmp_path, "kept", seed=seed)
    assert pruned.content_id == kept.content_id
    assert pruned.reuse == kept.reuse and pruned.reuse.reused > 0


def test_gc_with_no_cache_versions_empties_the_cache_and_a_run_recomputes_the_same(
    tmp_path: Path,
) -> None:
    from pipeline.store.gc import collect_garbage
    from pipeline.store.read import Store

    write_corpus(tmp_path)
    first = _run(tmp_path, "store")
    store = Store(str(tmp_path / "store"), "tiny")
    collect_garbage(store, min_age_s=0, cache_versions=0)
    assert _cache_files(tmp_path / "store" / "tiny") == set()
    shutil.rmtree(tmp_path / "store" / "tiny" / "versions")  # else it is found unchanged
    again = _run(tmp_path, "store")
    assert again.content_id == first.content_id
    assert again.reuse is not None and again.reuse.reused == 0


def test_gc_leaves_the_cache_alone_while_a_run_is_live_and_spares_fresh_strays(
    tmp_path: Path,
) -> None:
    from pipeline.store.gc import collect_garbage
    from pipeline.store.lock import RunLease
    from pipeline.store.read import Store

    write_corpus(tmp_path)
    _run(tmp_path, "store")
    _run(tmp_path, "store", seed=8)
    store = Store(str(tmp_path / "store"), "tiny")
    root = tmp_path / "store" / "tiny"
    stray = root / "cache" / "parts" / "written-by-a-run-that-died.arrow"
    stray.write_bytes(b"half a part")
    files = _cache_files(root)
    with RunLease(store, "a-live-run"):
        report = collect_garbage(store, min_age_s=0)
    assert _cache_files(root) == files
    assert report.cache_note == "left alone: run a-live-run is live"
    # By default anything changed in the last hour is spared: here, all of it.
    report = collect_garbage(store)
    assert _cache_files(root) == files and report.cache_rows_kept is not None
    collect_garbage(store, min_age_s=0)
    assert not stray.exists()
