"""Work-in-progress part files under `_staging/<run_id>/`: how records travel between passes.

Tasks write them (the ingest task of a source, each record-pass task, through the store's
filesystem), and the next pass or the shard writer reads them by path: memory-mapped on a
local disk, read whole on an object store. Part files are scratch: they are not fsynced (a
crash means a rerun) and never published.
"""

from __future__ import annotations

import mmap
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
            self.schema = reader.schema
            self.batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            # Where the map lies (a local file): its touched pages can be dropped.
            self.mapping: tuple[int, int] | None = None
            if isinstance(source, pa.MemoryMappedFile) and source.size() > 0:
                source.seek(0)
                self.mapping = (source.read_buffer(1).address, source.size())
        self.path = path
        self.starts = np.cumsum([0] + [b.num_rows for b in self.batches])

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return, per row of the part, its batch and its row within that batch."""
        batch_of = np.searchsorted(self.starts, rows, side="right") - 1
        return batch_of, rows - self.starts[batch_of]

    def drop_batch(self, b: int) -> None:
        """Stop counting the pages of record batch `b` read so far as this process's (they
        stay cached; a later read maps them again). An IPC file holds a batch's buffers
        together, so they are one range of the map."""
        if self.mapping is None:
            return
        base, size = self.mapping
        spans = [
            (buf.address, buf.address + buf.size)
            for column in self.batches[b].columns
            for buf in column.buffers()
            if buf is not None and buf.size and base <= buf.address < base + size
        ]
        if not spans:
            return
        start = min(a for a, _ in spans)
        start -= (start - base) % mmap.PAGESIZE
        drop_mapped_pages(start, max(z for _, z in spans) - start)


# A batch of rows whose runs of consecutive part rows hold less than this many bytes on
# average is copied into one record batch: the Parquet writer pays ~0.1 ms per chunk (a
# call per chunk and column of the nested schema), what copying ~0.5 MB costs. Measured on
# the bench's 166 KB rows, 256 a batch: one-row slices 46 ms, copied 30, one slice 22.
MIN_RUN_BYTES = 1 << 20


class PartSet:
    """Part files to take rows from by (part, row), each memory-mapped (on a local disk) and
    opened once.

    The shard writer takes a shard's rows in part order (`writer.plan_shards`), so most of
    a batch of them is a few runs of consecutive rows of one part: `rows` returns those as
    slices of the mapped record batches, no byte copied (the encoder and the hashes read
    the page cache through the map). A mapping holds every page it touched until they are
    dropped, so the writer drops each part batch's pages once its last row is written
    (`drop`): a task holds the pages of the batches it is writing, not of whole parts.
    On an object store a part is read whole into memory when first asked for.
    """

    def __init__(self, paths: list[str], fs: Any | None = None):
        self.paths = paths
        self.fs = _filesystem(fs)
        self._parts: dict[int, _MappedPart] = {}

    def _part(self, part: int) -> _MappedPart:
        if part not in self._parts:
            self._parts[part] = _MappedPart(self.paths[part], self.fs)
        return self._parts[part]

    def runs(self, parts: np.ndarray, rows: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Return the rows at (parts[i], rows[i]), in that order, as runs of consecutive
        rows of one record batch of one part: (part, batch, first row in it, length)."""
        n = len(parts)
        if n == 0:
            return []
        batch_of = np.empty(n, dtype=np.int64)
        local = np.empty(n, dtype=np.int64)
        for part in np.unique(parts).tolist():
            selected = np.nonzero(parts == part)[0]
            batch_of[selected], local[selected] = self._part(part).locate(rows[selected])
        breaks = np.r_[
            True,
            (parts[1:] != parts[:-1])
            | (batch_of[1:] != batch_of[:-1])
            | (local[1:] != local[:-1] + 1),
        ]
        starts = np.flatnonzero(breaks)
        lengths = np.diff(np.r_[starts, n])
        return [
            (int(parts[s]), int(batch_of[s]), int(local[s]), int(k))
            for s, k in zip(starts.tolist(), lengths.tolist(), strict=True)
        ]

    def rows(
        self, runs: list[tuple[int, int, int, int]], columns: list[str], nbytes: int
    ) -> pa.Table:
        """Return the `columns` of the rows of `runs` (as `runs` returns them), in order: one
        chunk per run, each a slice of a part's record batch (no copy), or one copied chunk
        where the runs hold less than `MIN_RUN_BYTES` on average (`nbytes`: the rows' size,
        `row_nbytes`)."""
        pieces = [
            self._part(part).batches[b].select(columns).slice(first, length)
            for part, b, first, length in runs
        ]
        if not pieces:
            return self._part(0).schema.empty_table().select(columns)
        if len(pieces) > 1 and nbytes < MIN_RUN_BYTES * len(pieces):
            return pa.Table.from_batches([pa.concat_batches(pieces)])
        return pa.Table.from_batches(pieces)

    def drop(self, batches: set[tuple[int, int]]) -> None:
        """Drop the mapped pages of these (part, batch) record batches (`_MappedPart.drop_batch`)."""
        for part, b in sorted(batches):
            self._part(part).drop_batch(b)

    def release(self) -> None:
        """Let go of every part (the maps go when nothing refers to their rows any more)."""
        self._parts.clear()
