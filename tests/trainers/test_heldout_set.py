"""The held-out eval set's identity: over the test split's rows, not its shard files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.record.schema import RECORD_SCHEMA
from pipeline.store.fs import LocalFS
from pipeline.store.manifest import content_id, schema_sha256
from pipeline.store.read import Store
from pipeline.store.row_digest import read_row_digests
from pipeline.store.writer import ShardWriter
from tests.fixtures.manifest import manifest_of
from tests.pipeline.execution.datajob_corpus import stage_records, work_record
from trainers.comparison import EvalProtocol, EvalSet
from trainers.config import TrainConfig
from trainers.heldout import HeldOutRowsUnreadable, HeldOutScorer, held_out_set
from trainers.registry import ModelEntry

SPLIT_OF = ("train", "test", "test", "validation")


def _records(changed: int | None = None) -> list[dict]:
    records = [work_record(i, split=SPLIT_OF[i % 4]) for i in range(12)]
    if changed is not None:
        records[changed]["messages"][-1]["content"] += " (edited)"
    return records


def _version(root: Path, version: int, records: list[dict], shard_size: int) -> Store:
    """Commit `records` as v<version> of store `root`/ds, shards cut at `shard_size` bytes."""
    store = Store(str(root), "ds")
    parts, index = stage_records(root / f"parts-{version}", records, rows_per_part=5)
    vdir = store.version_dir(version)
    shards = ShardWriter(vdir, "arrow", shard_size, LocalFS()).write(index, parts)
    schema_hash = schema_sha256(RECORD_SCHEMA)
    rows = [read_row_digests(f"{vdir}/{s.row_digests}", LocalFS()) for s in shards]
    manifest = manifest_of(
        "ds",
        shards,
        version=version,
        schema_sha256=schema_hash,
        content_id=content_id(schema_hash, rows),
    ).sealed()
    Path(store.manifest_path(version)).write_text(json.dumps(manifest.to_dict()))
    return store


def test_the_same_rows_in_other_shards_are_the_same_eval_set_and_a_changed_row_is_not(
    tmp_path: Path,
) -> None:
    store = _version(tmp_path, 1, _records(), 1 << 30)
    _version(tmp_path, 2, _records(), 1)  # one row per shard
    _version(tmp_path, 3, _records(changed=1), 1 << 30)  # record 1 is a test record
    one, many, changed = (held_out_set(store, store.manifest(v)) for v in (1, 2, 3))
    assert len([s for s in store.manifest(2).shards if s.split == "test"]) == one.rows == 6
    assert EvalSet.of(store.manifest(1)).sha256 != EvalSet.of(store.manifest(2)).sha256
    assert many.sha256 == one.sha256 and many.version == 2
    assert changed.sha256 != one.sha256


def test_a_row_digest_sidecar_that_does_not_match_its_manifest_is_refused(tmp_path: Path) -> None:
    store = _version(tmp_path, 1, _records(), 1 << 30)
    (test,) = [s for s in store.manifest(1).shards if s.split == "test"]
    sidecar = Path(store.version_dir(1), test.row_digests)
    sidecar.write_bytes(sidecar.read_bytes() + b"\0")
    with pytest.raises(HeldOutRowsUnreadable, match="run `roleforge verify`"):
        held_out_set(store, store.manifest(1))


def test_an_evaluation_cached_under_the_old_shard_file_identity_is_still_read(
    tmp_path: Path,
) -> None:
    # Model folders written before the identity moved to rows name their cached
    # evaluations by the hash of the shard files: those files are these rows, so it counts.
    store = _version(tmp_path, 1, _records(), 1 << 30)
    manifest = store.manifest(1)
    cfg = TrainConfig()
    model = tmp_path / "model"
    entry = ModelEntry("m", str(model), 0.0, {}, "tiny-random", "base", None, False)
    scorer = HeldOutScorer(store, manifest, cfg, [])
    old = EvalSet.of(manifest)
    assert scorer.eval_set.sha256 != old.sha256
    evaluation = {"loss": 1.5, "per_sample": {"r": {"loss": 1.5, "tokens": 3}}}
    body = {"eval_set": {"sha256": old.sha256}, "evaluation": evaluation}
    name = f"{old.sha256[:16]}-{EvalProtocol.of(cfg, []).key()}.json"
    (model / "evals").mkdir(parents=True)
    (model / "evals" / name).write_text(json.dumps(body))
    assert scorer._read_cache(entry) == evaluation
    # An old cache whose body names other shard files is not taken for these rows.
    (model / "evals" / name).write_text(json.dumps({**body, "eval_set": {"sha256": "0" * 64}}))
    assert scorer._read_cache(entry) is None
