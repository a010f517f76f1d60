"""Work-in-progress part files under `_staging/<run_id>/`: how records travel between passes.

Tasks write them (the ingest task of a source, each record-pass task, through the store's
filesystem), and the next pass or the shard writer reads them by path: memory-mapped on a
local disk, read whole on an object store. Part files are scratch: they are not fsynced (a
crash means a rerun) and never published.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store.fs import drop_mapped_pages

# Per-row overhead for ids, offsets and small struct fields, so text-only rows still
# count towards a shard's size.
ROW_OVERHEAD_BYTES = 256


def _filesystem(fs: Any | None) -> Any:
    if fs is None:
        from pipeline.store.fs import LocalFS

        return LocalFS()
    return fs


def read_part(path: str, fs: Any | None = None) -> pa.Table:
    """Return the table in an IPC part file (memory-mapped locally: no copy into the heap)."""
    with _filesystem(fs).open_input(path) as source:
        return pa.ipc.open_file(source).read_all()


def _list_bytes_per_row(column: pa.ChunkedArray, child: str, measure) -> np.ndarray:
    if column.num_chunks != 1:
        # Chunk by chunk: combining them would copy every media byte (a record pass batch is
        # its originals' chunk and its variants' chunk).
        parts = [_list_bytes_of(chunk, child, measure) for chunk in column.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return _list_bytes_of(column.chunk(0), child, measure)


def _list_bytes_of(array: pa.Array, child: str, measure) -> np.ndarray:
    n = len(array)
    values = array.flatten()
    if len(values) == 0:
        return np.zeros(n, dtype=np.int64)
    lengths = pc.fill_null(measure(values.field(child)), 0).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
    return np.bincount(parents, weights=lengths, minlength=n).astype(np.int64)


def row_nbytes(table: pa.Table) -> np.ndarray:
    """Return an estimate of each row's stored size: media bytes + message text + overhead."""
    sizes = np.full(table.num_rows, ROW_OVERHEAD_BYTES, dtype=np.int64)
    if table.num_rows == 0:
        return sizes
    sizes += _list_bytes_per_row(table["images"], "bytes", pc.binary_length)
    sizes += _list_bytes_per_row(table["audios"], "bytes", pc.binary_length)
    sizes += _list_bytes_per_row(table["messages"], "content", pc.binary_length)
    return sizes


@dataclass(frozen=True)
class PartSlice:
    """Where a written table landed: part file number and its first row in that file."""

    part: int
    first_row: int


class PartWriter:
    """Appends tables of one schema to rolling IPC part files of about `target_bytes` each
    in `folder`; with `single_file`, `folder` is the path of the one file written."""

    def __init__(
        self,
        folder: str,
        schema: pa.Schema,
        target_bytes: int | None = None,
        max_rows: int | None = None,
        fs: Any | None = None,
        single_file: bool = False,
    ):
        self.folder = folder
        self.schema = schema
        self.target_bytes = target_bytes
        self.max_rows = max_rows
        self.fs = _filesystem(fs)
        self.single_file = single_file
        self.paths: list[str] = []
        self.part_rows: list[int] = []
        self.rows_written = 0
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._sink: Any = None
        self._bytes = 0
        self._rows = 0

    def _open_next(self) -> None:
        self._close_current()
        if self.single_file:
            # A task's one output part may be a cache part another run is reading: it
            # appears whole on close, or not at all.
            path = self.folder
            self._sink = self.fs.open_output_whole(path)
        else:
            path = os.path.join(self.folder, f"part-{len(self.paths):05d}.arrow")
            self._sink = self.fs.open_output(path)
        self._writer = pa.ipc.new_file(self._sink, self.schema)
        self.paths.append(path)
        self.part_rows.append(0)
        self._bytes = 0
        self._rows = 0

    def _full(self) -> bool:
        if self.single_file:
            return False
        if self.target_bytes is not None and self._bytes >= self.target_bytes:
            return True
        return self.max_rows is not None and self._rows >= self.max_rows

    def write(self, table: pa.Table) -> PartSlice | None:
        """Append `table` (cast to the part schema); return where its first row landed."""
        if table.num_rows == 0:
            return None
        if self._writer is None or self._full():
            self._open_next()
        assert self._writer is not None
        table = table.select(self.schema.names)
        if table.schema != self.schema:
            table = table.cast(self.schema)
        where = PartSlice(len(self.paths) - 1, self._rows)
        self._writer.write_table(table)
        self._bytes += table.nbytes
        self._rows += table.num_rows
        self.part_rows[-1] += table.num_rows
        self.rows_written += table.num_rows
        return where

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            assert self._sink is not None
            self._sink.close()
        self._writer = None
        self._sink = None

    def close(self) -> list[str]:
        """Close the open part; return every part path written, in order."""
        self._close_current()
        return list(self.paths)

    def sizes(self) -> list[tuple[str, int]]:
        """Return (path, rows) of every part written."""
        return list(zip(self.paths, self.part_rows, strict=True))

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # The first error is the one to report: closing a part on a full disk raises again.
        try:
            self.close()
        except Exception:
            pass


class _MappedPart:
    """One part file (memory-mapped when local) as its record batches and their first rows."""

    def __init__(self, path: str, fs: Any):
        with fs.open_input(path) as source:
            reader = pa.ipc.open_file(source)
            self.batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            # Where the map lies (a local file): its touched pages can be dropped.
            self.mapping: tuple[int, int] | None = None
            if isinstance(source, pa.MemoryMappedFile) and source.size() > 0:
                source.seek(0)
                self.mapping = (source.read_buffer(1).address, source.size())
        self.starts = np.cumsum([0] + [b.num_rows for b in self.batches])

    def drop_pages(self) -> None:
        """Stop counting the pages read so far as this process's (they stay cached)."""
        if self.mapping is not None:
            drop_mapped_pages(*self.mapping)


def copy_pool() -> pa.MemoryPool:
    """Return the pool that rows copied out of part files live in: the C allocator's.

    A shard task copies ~32 MB of rows at a time and frees them as each batch is written.
    Arrow's default pool (mimalloc) keeps freed pages for reuse until `release_unused`, so
    a task held the pages of several copies (peak RSS of one 256 MB shard task, fresh
    process: +135-158 MB); glibc gives a buffer over its mmap threshold (16 MB in the
    workers, `cluster.WORKER_ENV`) back to the system as it is freed: +118 MB, same CPU."""
    return pa.system_memory_pool()


class PartSet:
    """Part files to take rows from by (part, row), each memory-mapped (on a local disk) and
    opened once.

    A mapping holds every page it touched until they are dropped, and the kernel maps a
    file's cached pages by whole folios (ext4's large folios, up to megabytes): reading one
    170 KB row made most of its part resident. Shard rows are in id order and lie in every
    part, so a shard task kept ~3.5x the shard's bytes resident (measured,
    `benchmarks/memory.py`). So `copy_out` copies the rows asked of one part and drops that
    part's pages before the next: a task holds the rows it copied and one part's pages.
    """

    def __init__(self, paths: list[str], fs: Any | None = None):
        self.paths = paths
        self.fs = _filesystem(fs)
        self._parts: dict[int, _MappedPart] = {}

    def _part(self, part: int) -> _MappedPart:
        if part not in self._parts:
            self._parts[part] = _MappedPart(self.paths[part], self.fs)
        return self._parts[part]

    def _copied(self, part: int, rows: np.ndarray) -> pa.RecordBatch:
        """Return `rows` of one part, in that order, copied out of its map."""
        mapped = self._part(part)
        batch_of = np.searchsorted(mapped.starts, rows, side="right") - 1
        local = rows - mapped.starts[batch_of]
        views = [
            mapped.batches[b].slice(row, 1)
            for b, row in zip(batch_of.tolist(), local.tolist(), strict=True)
        ]
        # Zero-copy one-row views concatenated once (a take on these nested columns is 3-5x
        # slower than the copy); `concat_batches` copies even a single view, so nothing
        # returned refers to the map, whose pages can go.
        copied = pa.concat_batches(views, memory_pool=copy_pool())
        mapped.drop_pages()
        return copied

    def copy_out(self, parts: np.ndarray, rows: np.ndarray) -> CopiedRows:
        """Return the rows at (parts[i], rows[i]) copied into memory, one part's pages
        resident at a time."""
        if len(parts) == 0:
            return CopiedRows([self._part(0).batches[0].slice(0, 0)], [], [])
        copies = []
        source = np.empty(len(parts), dtype=np.int64)
        offset = np.empty(len(parts), dtype=np.int64)
        for i, part in enumerate(np.unique(parts).tolist()):
            selected = np.nonzero(parts == part)[0]
            copies.append(self._copied(part, rows[selected]))
            source[selected] = i
            offset[selected] = np.arange(len(selected))
        return CopiedRows(copies, source.tolist(), offset.tolist())

    def take(self, parts: np.ndarray, rows: np.ndarray) -> pa.Table:
        """Return the rows at (parts[i], rows[i]), in that order, as one table (one chunk)."""
        return self.copy_out(parts, rows).take(0, len(parts))

    def release(self) -> None:
        """Close every part (the maps go when nothing refers to their rows any more)."""
        self._parts.clear()


@dataclass(frozen=True)
class CopiedRows:
    """Rows copied out of part files (`PartSet.copy_out`): row i is row `offset[i]` of
    `batches[source[i]]`."""

    batches: list[pa.RecordBatch]
    source: list[int]
    offset: list[int]

    def take(self, start: int, stop: int) -> pa.Table:
        """Return rows [start, stop) in order as one table (one chunk)."""
        sources, offsets = self.source[start:stop], self.offset[start:stop]
        if not sources:
            return pa.Table.from_batches([], schema=self.batches[0].schema)
        first = offsets[0]
        if sources.count(sources[0]) == len(sources) and offsets == list(
            range(first, first + len(offsets))
        ):
            # Consecutive rows of one copy (rows staged in id order): a view is enough.
            return pa.Table.from_batches([self.batches[sources[0]].slice(first, len(offsets))])
        views = [self.batches[s].slice(o, 1) for s, o in zip(sources, offsets, strict=True)]
        return pa.Table.from_batches([pa.concat_batches(views, memory_pool=copy_pool())])
