"""The shard writer: size-cut, byte-deterministic shards in part order that every reader opens."""

from __future__ import annotations

import hashlib
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.record.schema import RECORD_SCHEMA, records_to_table
from pipeline.store.fs import LocalFS
from pipeline.store.manifest import schema_sha256
from pipeline.store.row_digest import read_row_digests, row_digests
from pipeline.store.shards import read_shard, read_shard_batches
from pipeline.store.writer import (
    INDEX_SCHEMA,
    MIN_PARALLEL_SHARD_BYTES,
    ShardIntegrityError,
    ShardWriter,
    _made_ahead,
    check_invariants,
    even_cuts,
    plan_cuts,
    plan_shards,
)
from tests.fixtures.manifest import staged_content_id
from tests.fixtures.media import audio_bytes
from tests.pipeline.execution.datajob_corpus import stage_records, work_record

SPLIT_OF = ("train", "train", "validation", "train", "test")


def _records(n: int = 30) -> list[dict]:
    records = [work_record(i, split=SPLIT_OF[i % 5]) for i in range(n)]
    records[4]["messages"][0]["content"] += " <audio>"
    records[4]["audios"] = [{"bytes": audio_bytes("WAV", 0.1), "path": "a.wav"}]
    return records


def _write(
    tmp_path: Path,
    records,
    rows_per_part: int,
    fmt="arrow",
    shard_size=1 << 30,
    name="out",
    fs: LocalFS | None = None,
):
    parts, index = stage_records(tmp_path / f"parts-{name}", records, rows_per_part)
    writer = ShardWriter(str(tmp_path / name), fmt, shard_size, fs or LocalFS())
    return writer.write(index, parts)


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_the_same_staged_parts_give_byte_identical_shards(tmp_path: Path, fmt: str) -> None:
    records = _records()
    a = _write(tmp_path, records, rows_per_part=7, fmt=fmt, name="a")
    b = _write(tmp_path, records, rows_per_part=7, fmt=fmt, name="b")
    assert [s.sha256 for s in a] == [s.sha256 for s in b]
    assert [s.path for s in a] == [s.path for s in b]


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_records_staged_in_another_order_give_other_files_but_the_same_content_id(
    tmp_path: Path, fmt: str
) -> None:
    # Rows are taken in the order they lie in the parts (no copy into id order): the
    # layout follows the staging, what the version holds does not.
    records = _records()
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    a = _write(tmp_path, records, rows_per_part=30, fmt=fmt, name="a")
    b = _write(tmp_path, shuffled, rows_per_part=4, fmt=fmt, name="b")
    assert [s.sha256 for s in a] != [s.sha256 for s in b]
    schema_hash = schema_sha256(RECORD_SCHEMA)
    assert staged_content_id(str(tmp_path / "a"), a, schema_hash) == staged_content_id(
        str(tmp_path / "b"), b, schema_hash
    )


def test_shards_hold_each_split_in_part_order_and_are_cut_by_size(tmp_path: Path) -> None:
    records = _records()
    random.Random(4).shuffle(records)
    shards = _write(tmp_path, records, rows_per_part=7, shard_size=3000)
    train = [s for s in shards if s.split == "train"]
    assert len(train) > 1
    assert [s.path for s in train] == [
        f"train-{i:05d}-of-{len(train):05d}.arrow" for i in range(len(train))
    ]
    ids = []
    for s in train:
        with pa.memory_map(str(tmp_path / "out" / s.path)) as f:
            table = pa.ipc.open_stream(f).read_all()  # stream format: what datasets maps
        assert table.num_rows == s.rows
        assert set(table["split"].to_pylist()) == {"train"}
        assert "source_ref" not in table.column_names
        ids += table["id"].to_pylist()
    # Part paths sort as staged (`part-00000.arrow`, ...): the staging order, not id order.
    assert ids == [r["id"] for r in records if r["split"] == "train"]
    assert ids != sorted(ids)


class _RecordingFS(LocalFS):
    """LocalFS that notes, in order, every writeback it is asked to start and every fsync."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start_writeback(self, stream, start: int, stop: int) -> None:
        self.calls.append(("writeback", start, stop))
        super().start_writeback(stream, start, stop)

    def fsync_file(self, path: str) -> None:
        self.calls.append(("fsync", os.path.basename(path)))
        super().fsync_file(path)


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_a_shard_is_written_back_batch_by_batch_then_fsynced_once_at_the_end(
    tmp_path: Path, fmt: str, monkeypatch
) -> None:
    # The disk writes each batch while the next is gathered and hashed; the one fsync per
    # file comes after every shard is written (`write` makes its shards durable itself).
    monkeypatch.setattr("pipeline.store.writer.BATCH_MAX_ROWS", 4)
    records = [work_record(i, split="train") for i in range(10)]
    parts, index = stage_records(tmp_path / "parts", records, 5)
    fs = _RecordingFS()
    (shard,) = ShardWriter(str(tmp_path / "out"), fmt, 1 << 30, fs).write(index, parts)
    shard_calls = fs.calls[: fs.calls.index(("fsync", shard.path)) + 1]
    ranges = [(c[1], c[2]) for c in shard_calls if c[0] == "writeback"]
    assert len(ranges) == 3  # 10 rows in batches of 4
    assert ranges[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert 0 < ranges[-1][1] <= shard.bytes  # what follows is the footer, left to the fsync
    assert [c for c in fs.calls if c[0] == "fsync"].count(("fsync", shard.path)) == 1


def test_a_shard_task_writes_its_shard_and_sidecar_without_an_fsync(tmp_path: Path) -> None:
    # The commit fsyncs every staged file once (`sync_tree`), so the disk flushes one shard
    # while the next is encoded instead of each task waiting for its own.
    records = [work_record(i, split="train") for i in range(6)]
    parts, index = stage_records(tmp_path / "parts", records, 3)
    fs = _RecordingFS()
    writer = ShardWriter(str(tmp_path / "out"), "arrow", 1 << 30, fs)
    (plan,) = plan_shards(index, "arrow", 1 << 30)
    written = writer.write_shard(plan, parts)
    assert [c for c in fs.calls if c[0] == "fsync"] == []
    assert any(c[0] == "writeback" for c in fs.calls)
    assert (tmp_path / "out" / written.entry.path).stat().st_size == written.entry.bytes
    assert (tmp_path / "out" / written.entry.row_digests).exists()


def test_a_shard_plans_flags_are_added_after_the_rows_own_and_hashed_with_them(
    tmp_path: Path,
) -> None:
    records = [work_record(i, split="train") for i in range(4)]
    for r in records:
        r["quality"] = {"flags": ["slop"], "notes": ["slop: 3 phrases"]}
    parts, index = stage_records(tmp_path / "parts", records, 2)
    writer = ShardWriter(str(tmp_path / "out"), "arrow", 1 << 30, LocalFS())
    (plan,) = plan_shards(index, "arrow", 1 << 30)
    target = records[1]["id"]
    pairs = [
        ("near_duplicate_image", "image 0.97 with x"),
        ("near_duplicate_image", "image 1.00 with y"),
    ]
    flagged = plan.flagged({target: pairs, "not-in-this-shard": pairs[:1]})
    assert set(flagged.flags) == {target}
    written = writer.write_shard(flagged, parts)
    rows = {r["id"]: r for r in read_shard(str(tmp_path / "out" / written.entry.path)).to_pylist()}
    assert rows[target]["quality"]["flags"] == ["slop", "near_duplicate_image"]
    assert rows[target]["quality"]["notes"] == [
        "slop: 3 phrases",
        "near_duplicate_image: image 0.97 with x",
        "near_duplicate_image: image 1.00 with y",
    ]
    other = records[0]["id"]
    assert rows[other]["quality"]["flags"] == ["slop"]
    ids, sha = written.rows["id"].to_pylist(), written.rows["row_sha256"].to_pylist()
    digests = dict(zip(ids, sha, strict=True))
    table = pa.Table.from_pylist([rows[target], rows[other]], schema=RECORD_SCHEMA)
    assert row_digests(table) == [digests[target], digests[other]]


class _UnreadableFS(LocalFS):
    """LocalFS posing as a store whose output streams cannot be read back (an upload)."""

    @property
    def is_local(self) -> bool:
        return False


@pytest.mark.parametrize("fs", [LocalFS(), _UnreadableFS()], ids=["read-back", "on-the-way"])
@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_the_hashes_made_beside_the_encoding_are_those_of_the_file_and_rows_on_disk(
    tmp_path: Path, fmt: str, fs: LocalFS, monkeypatch
) -> None:
    # Over several batches, with the file read back a few bytes at a time (a local file)
    # or the hasher falling behind so the writer waits for it (a tiny pending limit): the
    # digests still cover every byte and every row, in order.
    monkeypatch.setattr("pipeline.store.writer.BATCH_MAX_ROWS", 3)
    monkeypatch.setattr("pipeline.store.writer.HashingSink.PENDING_LIMIT", 1)
    monkeypatch.setattr("pipeline.store.writer.ReadBackHash.CHUNK_BYTES", 7)
    records = _records(12)
    train = [r for r in records if r["split"] == "train"]
    (shard, *_) = _write(tmp_path, train, 5, fmt=fmt, fs=fs)
    path = tmp_path / "out" / shard.path
    assert shard.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert shard.bytes == path.stat().st_size
    sidecar = read_row_digests(str(tmp_path / "out" / shard.row_digests), LocalFS())
    table = read_shard(str(path))
    assert sidecar["id"].to_pylist() == table["id"].to_pylist()
    assert sidecar["row_sha256"].to_pylist() == row_digests(table)


def test_the_gather_thread_makes_every_batch_in_order_and_only_one_ahead() -> None:
    # The gather runs beside the encoding, one batch ahead: never more, so the memory
    # it holds grows by one batch at most.
    made: list[int] = []

    def batches():
        for i in range(6):
            made.append(i)
            yield i

    seen = []
    with ThreadPoolExecutor(1) as maker:
        for item in _made_ahead(batches(), maker):
            assert len(made) <= item + 2
            seen.append(item)
    assert seen == list(range(6))


def test_plan_cuts_never_exceeds_the_limit_unless_one_row_alone_does() -> None:
    assert plan_cuts(np.array([4, 4, 4, 9, 1]), 8) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert plan_cuts(np.array([1] * 5), 100, max_rows=2) == [(0, 2), (2, 4), (4, 5)]
    assert plan_cuts(np.array([], dtype=int), 8) == []


def _index(sizes_by_split: dict[str, list[int]]) -> pa.Table:
    """Return INDEX_SCHEMA rows with these row sizes per split, in one part, in order."""
    rows = [(split, size) for split, sizes in sizes_by_split.items() for size in sizes]
    return pa.table(
        {
            "split": [split for split, _ in rows],
            "id": [f"r{i:03d}" for i in range(len(rows))],
            "part": pa.array([0] * len(rows), pa.int32()),
            "row": pa.array(range(len(rows)), pa.int64()),
            "nbytes": pa.array([size for _, size in rows], pa.int64()),
        },
        schema=INDEX_SCHEMA,
    )


def _shard_rows(plans) -> list[tuple[str, int]]:
    return [(p.name, p.rows.num_rows) for p in plans]


MIB = 1 << 20


def test_on_several_cpus_a_split_gets_even_shards_for_its_share_of_them() -> None:
    index = _index({"train": [10 * MIB] * 10, "validation": [4 * MIB]})
    assert _shard_rows(plan_shards(index, "arrow", 256 * MIB, cpus=2)) == [
        ("train-00000-of-00002.arrow", 5),
        ("train-00001-of-00002.arrow", 5),
        ("validation-00000-of-00001.arrow", 1),
    ]
    assert _shard_rows(plan_shards(index, "arrow", 256 * MIB)) == [
        ("train-00000-of-00001.arrow", 10),
        ("validation-00000-of-00001.arrow", 1),
    ]


def test_cpus_never_make_a_shard_smaller_than_the_floor_nor_override_the_size_limit() -> None:
    small = _index({"train": [MIN_PARALLEL_SHARD_BYTES // 4] * 7})  # 1.75 floors in all
    assert len(plan_shards(small, "arrow", 256 * MIB, cpus=8)) == 1
    # The size limit already gives 4 shards of at most 30 MiB; 2 CPUs ask for fewer.
    cut = _index({"train": [10 * MIB] * 10})
    assert _shard_rows(plan_shards(cut, "arrow", 30 * MIB, cpus=2)) == [
        (f"train-0000{i}-of-00004.arrow", n) for i, n in enumerate([3, 3, 3, 1])
    ]


def test_even_cuts_end_each_range_at_the_row_that_reaches_its_share_of_the_bytes() -> None:
    assert even_cuts(np.array([10] * 4), 2) == [(0, 2), (2, 4)]
    assert even_cuts(np.array([50, 1, 1, 1, 47]), 2) == [(0, 1), (1, 5)]
    # One row holds most of the bytes: fewer ranges than asked, never an empty one.
    assert even_cuts(np.array([1, 1, 1, 97]), 2) == [(0, 4)]
    assert even_cuts(np.array([5]), 3) == [(0, 1)]


def test_a_split_without_records_gets_no_shard(tmp_path: Path) -> None:
    records = [work_record(i, split="train") for i in range(3)] + [work_record(3, split="test")]
    shards = _write(tmp_path, records, rows_per_part=3)
    assert [(s.path, s.rows) for s in shards] == [
        ("train-00000-of-00001.arrow", 3),
        ("test-00000-of-00001.arrow", 1),
    ]
    listed = sorted(os.listdir(tmp_path / "out"))
    assert listed == ["_rows"] + [s.path for s in reversed(shards)]
    sidecars = sorted(os.listdir(tmp_path / "out" / "_rows"))
    assert sidecars == ["test-00000.parquet", "train-00000.parquet"]
    assert [s.row_digests for s in shards] == [
        "_rows/train-00000.parquet",
        "_rows/test-00000.parquet",
    ]


def _sidecar_rows(folder: Path, shards) -> dict[str, str]:
    rows: dict[str, str] = {}
    for s in shards:
        table = read_row_digests(str(folder / s.row_digests), LocalFS())
        rows.update(zip(table["id"].to_pylist(), table["row_sha256"].to_pylist(), strict=True))
    return rows


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_row_digests_are_the_same_whatever_the_shard_size_format_and_part_layout(
    tmp_path: Path, fmt: str
) -> None:
    records = _records()
    whole = _write(tmp_path, records, rows_per_part=30, name="whole")
    cut = _write(tmp_path, records, rows_per_part=4, fmt=fmt, shard_size=3000, name="cut")
    assert len(cut) > len(whole)
    assert {s.sha256 for s in cut} != {s.sha256 for s in whole}  # another layout
    a, b = _sidecar_rows(tmp_path / "whole", whole), _sidecar_rows(tmp_path / "cut", cut)
    assert a == b and len(a) == len(records)
    schema_hash = schema_sha256(RECORD_SCHEMA)
    assert staged_content_id(str(tmp_path / "whole"), whole, schema_hash) == staged_content_id(
        str(tmp_path / "cut"), cut, schema_hash
    )


def test_a_row_digest_covers_every_column_media_bytes_included(tmp_path: Path) -> None:
    base = _records(5)
    table = records_to_table(base, RECORD_SCHEMA)
    digests = row_digests(table)
    assert len(set(digests)) == len(digests)
    assert row_digests(table.slice(2, 2)) == digests[2:4]  # the batch does not matter
    for edit in (
        lambda r: r["messages"][0].update(content=r["messages"][0]["content"] + "!"),
        lambda r: r["audios"][0].update(bytes=r["audios"][0]["bytes"][:-1] + b"\0"),
        lambda r: r["audios"][0].update(path="b.wav"),
        lambda r: r.update(quality={**(r.get("quality") or {}), "language": "xx"}),
    ):
        changed = [dict(r) for r in base]
        changed[4] = json.loads(json.dumps(base[4], default=lambda b: b.hex()))
        changed[4]["audios"] = [dict(a) for a in base[4]["audios"]]
        edit(changed[4])
        after = row_digests(records_to_table(changed, RECORD_SCHEMA))
        assert after[:4] == digests[:4]
        assert after[4] != digests[4]


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_shards_read_back_whole_with_the_hf_features_in_their_schema(
    tmp_path: Path, fmt: str
) -> None:
    shards = _write(tmp_path, _records(), rows_per_part=8, fmt=fmt)
    for s in shards:
        path = str(tmp_path / "out" / s.path)
        table = read_shard(path)
        assert table.num_rows == s.rows and os.path.getsize(path) == s.bytes
        assert table.schema.remove_metadata().equals(RECORD_SCHEMA.remove_metadata())
        assert table.schema.metadata[b"huggingface"] == RECORD_SCHEMA.metadata[b"huggingface"]


def test_shards_of_versions_written_as_ipc_files_still_read(tmp_path: Path) -> None:
    table = records_to_table(_records(5), RECORD_SCHEMA)
    path = str(tmp_path / "train-00000-of-00001.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, RECORD_SCHEMA) as writer:
        writer.write_table(table)
    assert read_shard(path)["id"].to_pylist() == table["id"].to_pylist()
    assert [b.num_rows for b in read_shard_batches(path, columns=["id"])] == [5]


def test_duplicate_ids_or_placeholder_mismatches_are_refused(tmp_path: Path) -> None:
    twice = [work_record(0, split="train"), work_record(0, split="test")]
    with pytest.raises(ShardIntegrityError, match="more than once"):
        _write(tmp_path, twice, rows_per_part=2, name="twice")
    broken = [work_record(0, split="train", images=[])]
    with pytest.raises(ShardIntegrityError, match="<image>"):
        _write(tmp_path, broken, rows_per_part=1, name="broken")


def test_a_null_media_list_counts_as_no_media_in_the_placeholder_check() -> None:
    plain = work_record(0, split="train", images=[])
    plain["messages"] = [{"role": "user", "content": "hi"}]
    plain["images"] = None
    check_invariants(records_to_table([plain], RECORD_SCHEMA))  # no placeholder, no media
    wanting = work_record(1, split="train")
    wanting["images"] = None
    with pytest.raises(ShardIntegrityError, match="1 <image> but 0 images"):
        check_invariants(records_to_table([wanting], RECORD_SCHEMA))


def _resident(paths: list[str]) -> dict[str, int]:
    """Return the kB of each of `paths` this process holds mapped and resident."""
    resident: dict[str, int] = {}
    current = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                current = fields[5] if len(fields) > 5 and fields[5] in paths else None
            elif current is not None and fields[0] == "Rss:":
                resident[current] = resident.get(current, 0) + int(fields[1])
    return {path: kb for path, kb in resident.items() if kb}


def _media_rows(tmp_path: Path, n: int, rows_per_part: int, shuffle: int | None = None):
    """Stage `n` train records of 1 MB of image bytes each; return (parts, index)."""
    records = [work_record(i, split="train") for i in range(n)]
    for i, record in enumerate(records):
        record["images"][0]["bytes"] = np.random.default_rng(i).bytes(1 << 20)
    if shuffle is not None:
        random.Random(shuffle).shuffle(records)
    return stage_records(tmp_path / "parts", records, rows_per_part)


def test_a_run_of_consecutive_part_rows_is_taken_as_a_slice_of_the_map(tmp_path: Path) -> None:
    parts, index = _media_rows(tmp_path, 6, rows_per_part=3)
    where = (index["part"].to_numpy(zero_copy_only=False), index["row"].to_numpy())
    runs = parts.runs(*where)
    assert runs == [(0, 0, 0, 3), (1, 0, 0, 3)]  # one run per part file
    before = pa.total_allocated_bytes() + pa.system_memory_pool().bytes_allocated()
    table = parts.rows(runs, RECORD_SCHEMA.names, sum(index["nbytes"].to_pylist()))
    after = pa.total_allocated_bytes() + pa.system_memory_pool().bytes_allocated()
    assert after - before < 1 << 20  # 6 MB of media, none of it copied
    assert table["images"].num_chunks == 2
    assert table["id"].to_pylist() == index["id"].to_pylist()


def test_small_rows_in_short_runs_are_copied_into_one_chunk(tmp_path: Path) -> None:
    # Every other row (a split interleaved with another): a table of one-row slices would
    # cost the Parquet writer a call per chunk and column, more than copying small rows.
    records = [work_record(i, split="train") for i in range(40)]
    parts, index = stage_records(tmp_path / "parts", records, rows_per_part=40)
    rows = np.arange(0, 40, 2)
    runs = parts.runs(np.zeros(len(rows), np.int32), rows)
    assert len(runs) == 20
    nbytes = int(index["nbytes"].to_numpy()[rows].sum())
    table = parts.rows(runs, RECORD_SCHEMA.names, nbytes)
    assert table["id"].num_chunks == 1
    assert table["id"].to_pylist() == [records[i]["id"] for i in rows.tolist()]


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc")
def test_a_part_batchs_mapped_pages_are_dropped_once_its_rows_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The encoder and the hashes read the rows through the map; a task that kept every page
    # it read would hold the whole shard. It holds the batches in flight: about three.
    from pipeline.store.staging import PartSet

    monkeypatch.setattr("pipeline.store.writer.BATCH_MAX_ROWS", 2)
    parts, index = _media_rows(tmp_path, 16, rows_per_part=2)  # 8 parts of 2 MB
    seen: list[int] = []
    rows = PartSet.rows

    def spy(self, runs, columns, nbytes):
        seen.append(sum(_resident(self.paths).values()))
        return rows(self, runs, columns, nbytes)

    monkeypatch.setattr(PartSet, "rows", spy)
    (shard,) = ShardWriter(str(tmp_path / "out"), "arrow", 1 << 30, LocalFS()).write(index, parts)
    assert shard.rows == 16 and len(seen) == 8
    assert max(seen) <= 7 * 1024  # kB: three 2 MB batches and a little, never 16 MB


def test_a_shard_task_copies_no_media_byte_of_rows_that_lie_in_part_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.store.writer as writer_module
    from pipeline.store.staging import PartSet

    monkeypatch.setattr(writer_module, "BATCH_MAX_ROWS", 4)
    parts, index = _media_rows(tmp_path, 12, rows_per_part=5, shuffle=5)
    held: list[int] = []
    rows = PartSet.rows

    def counted(self, runs, columns, nbytes):
        held.append(pa.total_allocated_bytes() + pa.system_memory_pool().bytes_allocated())
        return rows(self, runs, columns, nbytes)

    monkeypatch.setattr(PartSet, "rows", counted)
    baseline = pa.total_allocated_bytes() + pa.system_memory_pool().bytes_allocated()
    writer = ShardWriter(str(tmp_path / "out"), "arrow", 1 << 30, LocalFS())
    (shard,) = writer.write(index, parts)
    assert shard.rows == 12 and len(held) == 3
    assert max(held) - baseline < 1 << 20  # 12 MB of media written, none of it copied
