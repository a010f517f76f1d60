"""A split as the trainer reads it: its rows in id order, whatever order the shards hold."""

from __future__ import annotations

import random
from pathlib import Path

from pipeline.store.read import Store
from tests.trainers.conftest import make_record, write_version
from trainers.data import SplitReader


def _reader(store: Path, name: str, records: list[dict]) -> SplitReader:
    write_version(store, name, records)
    versions = Store(str(store), name)
    return SplitReader(versions.shard_paths(versions.manifest(1), "train"))


def test_a_split_reads_in_id_order_whatever_order_its_shard_holds_the_rows(
    tmp_path: Path,
) -> None:
    # The writer leaves rows in the order its record pass wrote them, which follows how the
    # work was cut; what a model trains on must follow the version's content alone.
    records = [make_record(i, "train", images=i % 2, audios=(i + 1) % 2) for i in range(9)]
    shuffled = list(records)
    random.Random(7).shuffle(shuffled)
    ids = sorted(r["id"] for r in records)
    assert [r["id"] for r in shuffled] != ids
    a, b = _reader(tmp_path, "a", records), _reader(tmp_path, "b", shuffled)
    assert a.column("id").to_pylist() == b.column("id").to_pylist() == ids
    rows = b.rows(list(range(9)))
    assert [r["id"] for r in rows] == ids
    assert rows == a.rows(list(range(9)))
    assert b.row(4) == rows[4]
    assert b.rows([2, 2, 0]) == [rows[2], rows[2], rows[0]]
    by_id = {r["id"]: r for r in records}
    assert b.has_media("images") == [bool(by_id[i]["images"]) for i in ids]
    assert b.has_media("audios") == [bool(by_id[i]["audios"]) for i in ids]
    assert b.media_counts() == {"image": 4, "audio": 5}
