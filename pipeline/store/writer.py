"""Deterministic shards: each split's records in part order, cut by size, hashed.

The bytes of a shard depend only on its records and the part files they were staged in:
rows are taken from the parts in (part, row) order, parts ordered by the smallest record
id each holds, rows in the order the record pass wrote them (an original, then its
variants), record batches are cut by a fixed rule on row count and row size, the schema
carries no timestamps, and nothing is compressed (media gains ~4% from zstd). Taking
rows in the order they lie, not in id order, lets the writer encode them straight from
the mapped parts: no copy of any byte into a new order (that gather cost as much CPU as
the encoding, `benchmarks/results.md`, "Missed: writer_vs_pyarrow"). How rows fall into
shards may then differ between runs of the same records (another number of workers, rows
reused from the record cache); what they hold does not: each row's digest is taken from
the rows as they are written and kept in the shard's sidecar (`store/row_digest.py`),
and the content id is made from those sorted by id, not from the files
(`manifest.content_id`). A split without records gets no shard at all: `datasets`
refuses a declared split that matches no data, and an empty file says nothing a missing
one does not.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER, RECORD_SCHEMA, SPLITS
from pipeline.store.fs import LocalFS, release_free_memory
from pipeline.store.manifest import ShardEntry
from pipeline.store.row_digest import digest_table, row_digests, write_row_digests
from pipeline.store.shards import shard_name
from pipeline.store.staging import PartSet, PartSlice, row_nbytes

# A record batch ends at this many rows or bytes, whichever comes first; fixed numbers,
# so batch boundaries (and with them the shard bytes) depend on the records alone. 32 MB,
# not 64: the next batch is gathered while this one is encoded (`_made_ahead`), so a task
# holds two batches; at 64 MB that put +64 MB per shard task on the 2,000-record memory
# figure (peak RSS 1820 -> 1889 MB with two write tasks). Row groups of 32 MB read as well.
BATCH_MAX_ROWS = 256
BATCH_MAX_BYTES = 32 * 1024 * 1024
# A shard is one task's work. With several CPUs to write on, a split gets shards for its share
# of them (`parallel_shards`), none below this size: a split written as one shard keeps one
# CPU busy while the others wait (the writer's threads overlap encoding and hashing, but do
# not fill two cores), and on N CPUs a split of N such sizes or more is written N ways.
# Measured on 2 CPUs, 400 benchmark records (one 195 MB train split), 6 warm jobs each,
# alternated in threes: the write 0.24-0.27 s as two shards against 0.27-0.29 s as one, the
# CPUs idle in it 0.01-0.04 against 0.07-0.10 CPU-seconds; the jobs 2.64-2.93 s against
# 2.68-2.93 s.
MIN_PARALLEL_SHARD_BYTES = 32 * 1024 * 1024
# The staged index the writer consumes: one row per record to publish.
INDEX_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("id", pa.string()),
        ("part", pa.int32()),
        ("row", pa.int64()),
        ("nbytes", pa.int64()),
    ]
)


def part_index(split: pa.Array, ids: pa.Array, where: PartSlice, nbytes: list[int]) -> pa.Table:
    """Return the INDEX_SCHEMA rows of records just written to `where`, in their order."""
    n = len(ids)
    return pa.table(
        {
            "split": split,
            "id": ids,
            "part": pa.array([where.part] * n, pa.int32()),
            "row": pa.array(range(where.first_row, where.first_row + n), pa.int64()),
            "nbytes": pa.array(nbytes, pa.int64()),
        },
        schema=INDEX_SCHEMA,
    )


def table_index(table: pa.Table, where: PartSlice) -> pa.Table:
    """Return the INDEX_SCHEMA rows of the records of `table`, just written to `where`."""
    return part_index(table["split"], table["id"], where, row_nbytes(table))


class ShardIntegrityError(RuntimeError):
    """The records about to be published break an invariant (duplicate ids, placeholders)."""


def plan_cuts(nbytes: np.ndarray, limit: int, max_rows: int | None = None) -> list[tuple[int, int]]:
    """Return [start, stop) ranges over rows: a range ends before it would exceed `limit`
    bytes (or `max_rows` rows); every range holds at least one row."""
    ranges: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, size in enumerate(nbytes.tolist()):
        too_big = total + size > limit
        too_long = max_rows is not None and i - start >= max_rows
        if i > start and (too_big or too_long):
            ranges.append((start, i))
            start, total = i, 0
        total += size
    if start < len(nbytes):
        ranges.append((start, len(nbytes)))
    return ranges


def even_cuts(nbytes: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Return at most `n` [start, stop) ranges over rows, each ending at the first row that
    takes the running total of bytes to its share (1/n, 2/n, ...); every range holds at
    least one row."""
    ends = np.cumsum(nbytes)
    total = int(ends[-1]) if len(ends) else 0
    stops = np.searchsorted(ends, [total * k / n for k in range(1, n)], side="left") + 1
    bounds = sorted({0, len(nbytes), *(int(b) for b in stops if 0 < b < len(nbytes))})
    return list(zip(bounds[:-1], bounds[1:], strict=False))


def parallel_shards(split_bytes: int, total_bytes: int, cpus: int) -> int:
    """Return how many shards a split of `split_bytes` (of `total_bytes` written in all)
    gets for its share of `cpus`: at least 1, none below MIN_PARALLEL_SHARD_BYTES."""
    if cpus <= 1 or total_bytes <= 0:
        return 1
    share = round(cpus * split_bytes / total_bytes)
    return max(1, min(share, split_bytes // MIN_PARALLEL_SHARD_BYTES))


def check_invariants(table: pa.Table) -> None:
    """Raise ShardIntegrityError if any row's placeholder counts differ from its media."""
    if table.num_rows == 0:
        return
    messages = table["messages"].combine_chunks()
    contents = pc.fill_null(messages.flatten().field("content"), "")
    parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    for placeholder, column in ((IMAGE_PLACEHOLDER, "images"), (AUDIO_PLACEHOLDER, "audios")):
        found = pc.count_substring(contents, placeholder).to_numpy(zero_copy_only=False)
        per_row = np.bincount(parents, weights=found, minlength=table.num_rows)
        # A null list holds no media (its length is null, which numpy would read as NaN).
        media = pc.fill_null(pc.list_value_length(table[column]), 0).to_numpy(zero_copy_only=False)
        bad = np.nonzero(per_row != media)[0]
        if len(bad):
            record_id = table["id"][int(bad[0])].as_py()
            raise ShardIntegrityError(
                f"record {record_id}: {int(per_row[bad[0]])} {placeholder} but "
                f"{int(media[bad[0]])} {column}"
            )


def check_unique_ids(index: pa.Table) -> None:
    """Raise ShardIntegrityError naming an id that occurs twice in the index."""
    ids = index["id"].combine_chunks()
    # A hash count first (a few ms per 100,000 ids): only a repeat pays for the sort.
    if len(ids) < 2 or pc.count_distinct(ids, mode="all").as_py() == len(ids):
        return
    ordered = pc.array_sort_indices(ids)
    sorted_ids = ids.take(ordered)
    same = pc.equal(sorted_ids.slice(1), sorted_ids.slice(0, len(ids) - 1))
    if pc.any(same).as_py():
        position = int(np.nonzero(same.to_numpy(zero_copy_only=False))[0][0])
        raise ShardIntegrityError(f"id {sorted_ids[position].as_py()} occurs more than once")


class HashingSink:
    """A write-only file object that hashes and counts what passes through it: the file
    hash of a shard written to a stream that cannot be read back (an object store's
    upload). A local file is hashed as it is read back instead (`ReadBackHash`).

    With a `hasher` (one worker thread) the sha256 runs there, beside the encoding of the
    next pages: hashlib and pyarrow's writers both release the GIL, so on two cores the
    hash costs the writer little wall time. What pyarrow hands `write` is immutable (a
    bytes copy, or an Arrow buffer of the table), so the thread may read it after `write`
    returns; the one worker keeps the updates in order.
    """

    # Bytes handed to the hasher and not yet hashed, at most: past it `write` waits, so
    # memory stays bounded when the disk outruns the hash.
    PENDING_LIMIT = 128 * 1024 * 1024

    def __init__(self, raw: Any, hasher: Executor | None = None):
        import hashlib

        self._raw = raw
        self._hash = hashlib.sha256()
        self._hasher = hasher
        self._pending: deque[tuple[Future[None], int]] = deque()
        self._pending_bytes = 0
        self.bytes = 0
        self.closed = False

    @property
    def sink(self) -> Any:
        """What the format writer writes to: this object."""
        return self

    def mark(self) -> None:
        """Nothing to do: every byte was handed to the hash as it was written."""

    def write(self, data: Any) -> int:
        view = memoryview(data)
        written = self._raw.write(view)
        self.bytes += view.nbytes
        if self._hasher is None:
            self._hash.update(view)
            return written
        self._pending.append((self._hasher.submit(self._hash.update, view), view.nbytes))
        self._pending_bytes += view.nbytes
        while self._pending_bytes > self.PENDING_LIMIT:
            self._settle_oldest()
        return written

    def _settle_oldest(self) -> None:
        future, size = self._pending.popleft()
        future.result()
        self._pending_bytes -= size

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.bytes

    def flush(self) -> None:
        if hasattr(self._raw, "flush"):
            self._raw.flush()

    def close(self) -> None:
        # The caller owns the real file (it closes it; the commit fsyncs it).
        self.closed = True

    def settle(self) -> None:
        """Wait until the hasher has read everything written so far (and let go of it)."""
        while self._pending:
            self._settle_oldest()

    def hexdigest(self) -> str:
        """Return the sha256 of every byte written (waiting for the hasher to catch up)."""
        self.settle()
        return self._hash.hexdigest()


class ReadBackHash:
    """The sha256 of a local file as it is written: each `mark` hands the bytes written
    since the last one to `hasher` (one worker thread, so the ranges are hashed in order),
    which reads them back from the page cache into one reused buffer.

    The format writer then writes straight to the native file. Through a Python sink
    (`HashingSink`) pyarrow calls back into Python for every page and copies it into a new
    bytes object, in freshly faulted (kernel-zeroed) memory, on the encoding thread: ~40% of
    that thread's CPU on a 330 MB shard of 160 KB rows, against one page-cache copy here, on
    the hashing thread. Reading the finished file back instead (what the writer did first)
    left the hash after the encoding rather than beside it.
    """

    # Small enough that the hash reads what was just read back from the CPU's cache, not
    # from memory: 1 MB reads took 5-8% less CPU than 8 MB ones for read + sha256 of the
    # bench's 974 MB (0.63-0.64 against 0.66-0.69 s, three repetitions each).
    CHUNK_BYTES = 1024 * 1024

    def __init__(self, raw: Any, path: str, hasher: Executor):
        import hashlib

        self.sink = raw
        self.bytes = 0
        self._path = path
        self._hasher = hasher
        self._hash = hashlib.sha256()
        self._buffer = memoryview(bytearray(self.CHUNK_BYTES))
        self._pending: list[Future[None]] = []

    def mark(self) -> None:
        """Hand the bytes written since the last mark to the hasher."""
        stop = self.sink.tell()
        if stop > self.bytes:
            self._pending.append(self._hasher.submit(self._hash_range, self.bytes, stop))
            self.bytes = stop

    def _hash_range(self, start: int, stop: int) -> None:
        with open(self._path, "rb", buffering=0) as f:
            f.seek(start)
            while start < stop:
                read = f.readinto(self._buffer[: min(self.CHUNK_BYTES, stop - start)])
                if not read:
                    raise OSError(f"{self._path}: ends at {start} bytes, {stop} were written")
                self._hash.update(self._buffer[:read])
                start += read

    def hexdigest(self) -> str:
        """Return the sha256 of every byte marked (waiting for the hasher to catch up)."""
        for future in self._pending:
            future.result()
        self._pending.clear()
        return self._hash.hexdigest()


@dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its file name, split, and its rows (INDEX_SCHEMA, in part order);
    `flags`: row id -> (code, note) flags to add to its `quality` as it is written (the
    near-duplicate media pairs the driver found after the record pass), only its rows'."""

    name: str
    split: str
    rows: pa.Table
    flags: Mapping[str, list[tuple[str, str]]] = field(default_factory=dict)

    def flagged(self, flags: Mapping[str, list[tuple[str, str]]]) -> ShardPlan:
        """Return this plan with the `flags` of its own rows."""
        if not flags:
            return self
        mine = {i: flags[i] for i in self.rows["id"].to_pylist() if i in flags}
        return ShardPlan(self.name, self.split, self.rows, mine)


def plan_shards(
    index: pa.Table, fmt: str, shard_size: int, ids_checked: bool = False, cpus: int = 1
) -> list[ShardPlan]:
    """Return the shards of `index`: per split, rows in (part, row) order and cut by size
    (parts numbered by the smallest record id each holds, `execution.plan.writer_index`),
    into more and even shards where the split's share of `cpus` asks for more
    (`parallel_shards`; none above `shard_size`). Raise ShardIntegrityError for a repeated
    id (unless the caller has `check_unique_ids` over these rows or more already:
    `ids_checked`) or an unknown split. A split without records gets no shard."""
    if not ids_checked:
        check_unique_ids(index)
    unknown = set(index["split"].unique().to_pylist()) - set(SPLITS)
    if unknown:
        raise ShardIntegrityError(f"records with unknown split(s): {sorted(map(str, unknown))}")
    plans = []
    total_bytes = pc.sum(index["nbytes"]).as_py() or 0
    for split in SPLITS:
        # A split that holds every row (the benchmark's) is sorted without a filtered copy.
        same = pc.equal(index["split"], split)
        whole = index.num_rows and pc.all(same, skip_nulls=False).as_py()
        rows = (index if whole else index.filter(same)).sort_by(
            [("part", "ascending"), ("row", "ascending")]
        )
        nbytes = rows["nbytes"].to_numpy(zero_copy_only=False)
        cuts = plan_cuts(nbytes, shard_size)
        wanted = parallel_shards(int(nbytes.sum()), total_bytes, cpus)
        if wanted > len(cuts):
            even = even_cuts(nbytes, wanted)
            if all(int(nbytes[a:b].sum()) <= shard_size for a, b in even):
                cuts = even
        for i, (start, stop) in enumerate(cuts):
            name = shard_name(split, i, len(cuts), fmt)
            plans.append(ShardPlan(name, split, rows.slice(start, stop - start)))
    return plans


def localized(plan: ShardPlan, paths: list[str]) -> tuple[ShardPlan, list[str]]:
    """Return the plan with its `part` numbers renumbered over only the part files it reads,
    and those files: what one shard task needs to be sent."""
    parts = plan.rows["part"].to_numpy(zero_copy_only=False)
    used, local = np.unique(parts, return_inverse=True)
    column = plan.rows.schema.get_field_index("part")
    rows = plan.rows.set_column(column, "part", pa.array(local.astype(np.int32), pa.int32()))
    return ShardPlan(plan.name, plan.split, rows, plan.flags), [paths[int(i)] for i in used]


def with_flags(table: pa.Table, flags: Mapping[str, list[tuple[str, str]]]) -> pa.Table:
    """Return `table` with the (code, note) flags of its rows by id added to their `quality`
    after those it holds: each code once in `flags`, a note "code: note" per pair, as the
    quality stages' `add_flags` adds them (the store does not import the stages)."""
    ids = table["id"].to_pylist()
    if not any(i in flags for i in ids):
        return table
    values = table["quality"].to_pylist()
    for row, record_id in enumerate(ids):
        found = flags.get(record_id)
        if not found:
            continue
        quality = dict(values[row] or {"flags": [], "notes": []})
        codes = list(quality.get("flags") or [])
        notes = list(quality.get("notes") or [])
        for code, note in found:
            if code not in codes:
                codes.append(code)
            notes.append(f"{code}: {note}")
        values[row] = {**quality, "flags": codes, "notes": notes}
    column = table.schema.get_field_index("quality")
    field_ = table.schema.field(column)
    return table.set_column(column, field_, pa.array(values, field_.type))


_DONE = object()


def _made_ahead(items: Iterator[Any], maker: Executor) -> Iterator[Any]:
    """Yield `items`, the next one made on `maker` (one thread) while the caller works on
    this one: one item ahead, so the memory held grows by one item at most."""
    pending = maker.submit(next, items, _DONE)
    while (item := pending.result()) is not _DONE:
        pending = maker.submit(next, items, _DONE)
        yield item
        del item


@dataclass(frozen=True)
class WrittenShard:
    """A shard just written: its manifest entry and its rows' (id, row_sha256), in order."""

    entry: ShardEntry
    rows: pa.Table


def _ids_and_digests(table: pa.Table) -> tuple[list[str], list[str]]:
    return table["id"].to_pylist(), row_digests(table)


@dataclass(frozen=True)
class ShardWriter:
    """Writes staged records into part-ordered, size-cut shards, hashed while written (the file
    and each row), each with its row-digest sidecar. `write_shard` leaves them to the
    commit's one fsync pass (`fs.sync_tree`); `write` makes them durable itself."""

    folder: str
    fmt: str
    shard_size: int
    fs: LocalFS
    schema: pa.Schema = RECORD_SCHEMA

    def write(self, index: pa.Table, parts: PartSet) -> list[ShardEntry]:
        """Write every split of `index` (INDEX_SCHEMA rows pointing into `parts`) in this
        process, durable when this returns; return the manifest's shard entries. A split
        without records gets no shard."""
        self.fs.makedirs(self.folder)
        shards = []
        for plan in plan_shards(index, self.fmt, self.shard_size):
            shards.append(self.write_shard(plan, parts).entry)
            parts.release()  # one shard's parts open at a time
        self.fs.sync_tree(self.folder)
        return shards

    def write_shard(self, plan: ShardPlan, parts: PartSet) -> WrittenShard:
        """Write one planned shard and its sidecar, not yet fsynced (the commit makes every
        staged file durable in one pass before it publishes, `VersionCommitter.commit`);
        return its manifest entry and row digests.

        The main thread encodes; one worker thread takes the next batch's rows out of the
        parts meanwhile (slices of the maps, `_batches`), one takes each batch's row
        digests, one hashes the file's bytes as they are written, so the two hashing
        passes overlap the encoding instead of following it: pyarrow's writers and hashlib
        release the GIL."""
        path = os.path.join(self.folder, plan.name)
        # What earlier tasks in this worker freed (a record pass's media: 30-75 MB per
        # worker measured, anonymous) goes back before this task's copies come on top.
        release_free_memory()
        facts: list[Future[tuple[list[str], list[str]]]] = []
        with (
            ThreadPoolExecutor(1, thread_name_prefix="shard-rows") as taker,
            ThreadPoolExecutor(1, thread_name_prefix="row-digest") as digester,
            ThreadPoolExecutor(1, thread_name_prefix="shard-hash") as hasher,
        ):
            raw = self.fs.open_output(path)
            try:
                file_hash: HashingSink | ReadBackHash = (
                    ReadBackHash(raw, path, hasher)
                    if self.fs.is_local
                    else HashingSink(raw, hasher)
                )
                gathered = _made_ahead(self._batches(plan.rows, parts, plan.flags), taker)
                batches = self._digested(gathered, digester, facts)
                self._write_shard(file_hash.sink, self._written_back(batches, raw, file_hash))
                file_hash.mark()  # the footer
            finally:
                raw.close()
            sha256 = file_hash.hexdigest()
            ids = [i for f in facts for i in f.result()[0]]
            digests = [d for f in facts for d in f.result()[1]]
        # What the encoder and the rows copied out of short runs held is freed: hand its
        # pages back to the system (the allocators keep them otherwise).
        release_free_memory()
        rows = digest_table(ids, digests)
        sidecar, sidecar_sha256 = write_row_digests(self.folder, plan.name, rows, self.fs)
        entry = ShardEntry(
            path=plan.name,
            split=plan.split,
            rows=plan.rows.num_rows,
            bytes=file_hash.bytes,
            sha256=sha256,
            row_digests=sidecar,
            row_digests_sha256=sidecar_sha256,
        )
        return WrittenShard(entry, rows)

    def _digested(
        self,
        batches: Iterator[pa.Table],
        digester: Executor,
        facts: list[Future[tuple[list[str], list[str]]]],
    ) -> Iterator[pa.Table]:
        """Yield the shard's batches, handing each to `digester` for its rows' ids and
        digests (appended to `facts` in batch order)."""
        for table in batches:
            facts.append(digester.submit(_ids_and_digests, table))
            yield table
            del table  # not held while the next batch is copied (nor in the loops around)
            # Written: once the digester is done with it too (it ran beside the encoding),
            # it is gone before the batch after the next is gathered, so a task holds the
            # batch being written and the one gathered ahead, never a third.
            facts[-1].result()

    def _written_back(
        self, batches: Iterator[pa.Table], raw: Any, file_hash: HashingSink | ReadBackHash
    ) -> Iterator[pa.Table]:
        """Yield `batches`; each time the next one is asked for (the previous one is in
        the file), hand what is there to the file hash and start the disk writing it, so
        the disk flushes this shard while the task goes on, and the commit's one fsync of
        it waits for little."""
        started = 0
        for table in batches:
            yield table
            del table
            file_hash.mark()
            self.fs.start_writeback(raw, started, file_hash.bytes)
            started = file_hash.bytes

    def _batches(
        self,
        rows: pa.Table,
        parts: PartSet,
        flags: Mapping[str, list[tuple[str, str]]] | None = None,
    ) -> Iterator[pa.Table]:
        """Yield the shard's rows, batch by batch (`plan_cuts`), each as slices of the
        mapped parts' record batches (`PartSet.rows`: no copy where its rows are runs of
        consecutive part rows, as in part order). A part batch's pages are dropped once
        the shard batches holding its rows are written and hashed."""
        nbytes = rows["nbytes"].to_numpy(zero_copy_only=False)
        part = rows["part"].to_numpy(zero_copy_only=False)
        row = rows["row"].to_numpy(zero_copy_only=False)
        cuts = plan_cuts(nbytes, BATCH_MAX_BYTES, BATCH_MAX_ROWS)
        runs = [parts.runs(part[start:stop], row[start:stop]) for start, stop in cuts]
        # The shard batch after which each part batch is needed no more.
        last_use: dict[tuple[int, int], int] = {}
        for i, cut_runs in enumerate(runs):
            for p, b, _, _ in cut_runs:
                last_use[(p, b)] = i
        done: list[set[tuple[int, int]]] = [set() for _ in cuts]
        for key, i in last_use.items():
            done[i].add(key)
        for i, ((start, stop), cut_runs) in enumerate(zip(cuts, runs, strict=True)):
            # Made one batch ahead (`_made_ahead`): when batch i is asked for, batch i - 1
            # is being written and batch i - 2 is written and hashed.
            if i >= 2:
                parts.drop(done[i - 2])
            table = parts.rows(cut_runs, self.schema.names, int(nbytes[start:stop].sum()))
            if flags:
                table = with_flags(table, flags)
            table = pa.Table.from_arrays(table.columns, schema=self.schema)
            check_invariants(table)
            yield table
            del table

    def _write_shard(self, sink: Any, batches: Iterator[pa.Table]) -> None:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            # Parquet keeps its spec-compliant list names (`list.element`), which readers
            # of the format expect; the Arrow types are otherwise those of an IPC shard.
            with pq.ParquetWriter(
                sink, self.schema, compression="none", use_dictionary=False
            ) as writer:
                for table in batches:
                    writer.write_table(table, row_group_size=table.num_rows)
                    del table  # gone before the next batch is copied
            return
        # The IPC *stream* format: what `datasets` writes and `Dataset.from_file` maps.
        with pa.ipc.new_stream(sink, self.schema) as writer:
            for table in batches:
                writer.write_table(table)
                del table  # gone before the next batch is copied
