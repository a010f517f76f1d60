"""Work-in-progress part files under `_staging/<run_id>/`: how records travel between passes.

Tasks write them (the ingest task of a source, each record-pass task, through the store's
filesystem), and the next pass or the shard writer reads them by path: memory-mapped on a
local disk, read whole on an object store. Part files are scratch: they are not fsynced (a
crash means a rerun) and never published.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record.schema import MEDIA_TYPE
from pipeline.store.fs import drop_mapped_pages

# Per-row overhead for ids, offsets and small struct fields, so text-only rows still
# count towards a shard's size.
ROW_OVERHEAD_BYTES = 256
# `PartSet.gather_cuts` copies the rows without their media bytes out of the parts for
# several cuts at once, this many bytes of them at most (held beside the cuts' batches).
LIGHT_WINDOW_BYTES = 8 * 1024 * 1024


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
        self._stripped: dict[int, pa.RecordBatch | None] = {}
        self._media: dict[tuple[int, str], _MediaBytes] = {}
        self._fd: tuple[int, weakref.finalize] | None = None

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return, per row of the part, its batch and its row within that batch."""
        batch_of = np.searchsorted(self.starts, rows, side="right") - 1
        return batch_of, rows - self.starts[batch_of]

    def drop_pages(self) -> None:
        """Stop counting the pages read so far as this process's (they stay cached)."""
        if self.mapping is not None:
            drop_mapped_pages(*self.mapping)

    def stripped(self, b: int) -> pa.RecordBatch | None:
        """Return batch `b` with every media item's bytes empty (their validity kept), or
        None where its media cannot be read from the file by position (the part is not
        mapped, or an array is sliced or not where the map is)."""
        if b not in self._stripped:
            batch = self.batches[b]
            columns = list(batch.columns)
            for i, field in enumerate(batch.schema):
                if field.type != MEDIA_LIST:
                    continue
                if self.media_bytes(b, field.name) is None:
                    columns = None
                    break
                columns[i] = _without_bytes(batch.column(i))
            self._stripped[b] = (
                None
                if columns is None
                else pa.RecordBatch.from_arrays(columns, schema=batch.schema)
            )
        return self._stripped[b]

    def media_bytes(self, b: int, column: str) -> _MediaBytes | None:
        """Return where the bytes of batch `b`'s media items of `column` lie in the file,
        or None where they cannot be read from it by position."""
        key = (b, column)
        if key not in self._media:
            self._media[key] = _MediaBytes.of(self.batches[b].column(column), self.mapping)
        return self._media[key]

    def fd(self) -> int:
        """Return a descriptor of the part file, opened once, for positioned reads; it is
        closed by `close`, or when this object goes (a task's PartSet is often just let go)."""
        if self._fd is None:
            fd = os.open(self.path, os.O_RDONLY)
            self._fd = (fd, weakref.finalize(self, os.close, fd))
        return self._fd[0]

    def close(self) -> None:
        if self._fd is not None:
            self._fd[1]()  # closes it, once
            self._fd = None


MEDIA_LIST = pa.list_(MEDIA_TYPE)


@dataclass(frozen=True)
class _MediaBytes:
    """Where the media bytes of one list<struct<bytes, path>> column of a mapped batch lie:
    row r's items are `items[list_offsets[r]:list_offsets[r + 1]]`, item k's bytes are
    file bytes [position + value_offsets[k], position + value_offsets[k + 1])."""

    list_offsets: np.ndarray
    value_offsets: np.ndarray
    position: int

    @classmethod
    def of(cls, column: pa.Array, mapping: tuple[int, int] | None) -> _MediaBytes | None:
        if mapping is None or column.offset or column.values.offset:
            return None
        binary = column.values.field("bytes")
        _, offsets, data = binary.buffers()
        if binary.offset or offsets is None:
            return None
        base, size = mapping
        position = 0  # no bytes to read
        if data is not None and data.size:
            position = data.address - base
            if not (0 <= position and position + data.size <= size):
                return None  # not the file's bytes (a compressed part is decoded into memory)
        list_offsets = np.frombuffer(column.buffers()[1], np.int32)[: len(column) + 1]
        value_offsets = np.frombuffer(offsets, np.int32)[: len(binary) + 1]
        return cls(list_offsets.astype(np.int64), value_offsets.astype(np.int64), position)


def _without_bytes(column: pa.Array) -> pa.Array:
    """Return a media list column (offset 0) with every item's bytes empty, validity kept."""
    values = column.values
    binary = values.field("bytes")
    zeros = pa.py_buffer(np.zeros(len(binary) + 1, np.int32))
    empty = pa.Array.from_buffers(
        pa.binary(), len(binary), [binary.buffers()[0], zeros, pa.py_buffer(b"")], binary.null_count
    )
    return _with_binary(column, empty)


def _with_binary(column: pa.Array, binary: pa.Array) -> pa.Array:
    """Return media list `column` with `binary` (one value per item) as its items' bytes;
    validity, offsets and paths are the column's own buffers, not copies."""
    values = column.values
    struct = pa.Array.from_buffers(
        values.type,
        len(values),
        [values.buffers()[0]],
        values.null_count,
        children=[binary, values.field("path")],
    )
    return pa.Array.from_buffers(
        column.type,
        len(column),
        column.buffers()[:2],
        column.null_count,
        column.offset,
        children=[struct],
    )


def copy_pool() -> pa.MemoryPool:
    """Return the pool that rows copied out of part files live in: the C allocator's.

    A shard task copies ~32 MB of rows at a time and frees them as each batch is written.
    Arrow's default pool (mimalloc) keeps freed pages for reuse until `release_unused`, so
    a task held the pages of several copies (peak RSS of one 256 MB shard task, fresh
    process: +135-158 MB); glibc gives a buffer over its mmap threshold (16 MB in the
    workers, `cluster.WORKER_ENV`) back to the system as it is freed: +118 MB, same CPU."""
    return pa.system_memory_pool()


class _Lease:
    """What a lent buffer's Arrow buffer holds on to: the array lent (kept alive by it)."""

    __slots__ = ("array", "__weakref__")

    def __init__(self, array: np.ndarray):
        self.array = array


class MediaBuffers:
    """Buffers that one shard task reads each batch's media bytes into (`PartSet.gather_cuts`),
    reused from batch to batch.

    Allocated afresh per batch (`copy_pool`), every batch's ~32 MB was a new mapping (glibc
    maps allocations over its 16 MB threshold, `cluster.WORKER_ENV`, and unmaps them when
    freed), and reading the media into it faulted in every page, which the kernel zeroes
    first: ~255,000 faults and ~0.5 s of system CPU per 974 MB of rows, a third of the
    gather's CPU, measured. A lent buffer comes back when nothing refers to it any more:
    Arrow keeps its `_Lease` alive until the last array over the bytes goes, and a weak
    reference says when that happened. A shard task holds two batches at a time (the one
    written, the one gathered ahead), so two buffers per media column, until it ends and
    lets go of them all."""

    def __init__(self, min_bytes: int = 0):
        # Buffers are at least this big, so batches of slightly different sizes reuse them
        # (pages never written to are never faulted in).
        self.min_bytes = min_bytes
        self._slots: list[tuple[np.ndarray, weakref.ref[_Lease] | None]] = []

    def lend(self, size: int) -> tuple[pa.Buffer, memoryview]:
        """Return a buffer of `size` bytes (its content undefined), one no Arrow array
        refers to any more where there is one big enough, and a writable view of it (an
        Arrow buffer over foreign memory is read-only to Python)."""
        if size == 0:
            return pa.py_buffer(b""), memoryview(bytearray())
        free = [i for i, (_, lease) in enumerate(self._slots) if lease is None or lease() is None]
        fits = [i for i in free if len(self._slots[i][0]) >= size]
        if fits:
            slot = fits[0]
        else:
            array = np.empty(max(size, self.min_bytes), np.uint8)
            if free:  # too small: replaced, so the task holds no more buffers than before
                slot = free[0]
                self._slots[slot] = (array, None)
            else:
                slot = len(self._slots)
                self._slots.append((array, None))
        array = self._slots[slot][0]
        lease = _Lease(array)
        self._slots[slot] = (array, weakref.ref(lease))
        return pa.foreign_buffer(array.ctypes.data, size, base=lease), memoryview(array)[:size]

    @property
    def held(self) -> int:
        """Return how many buffers were allocated (lent or free)."""
        return len(self._slots)


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

    def _copied(self, part: int, rows: np.ndarray, stripped: bool = False) -> pa.RecordBatch:
        """Return `rows` of one part, in that order, copied out of its map (`stripped`: with
        their media items' bytes left empty, `_MappedPart.stripped`)."""
        mapped = self._part(part)
        batch_of, local = mapped.locate(rows)
        batches = [mapped.stripped(b) for b in range(len(mapped.batches))] if stripped else None
        views = [
            (batches[b] if batches else mapped.batches[b]).slice(row, 1)
            for b, row in zip(batch_of.tolist(), local.tolist(), strict=True)
        ]
        # Zero-copy one-row views concatenated once (a take on these nested columns is 3-5x
        # slower than the copy); `concat_batches` copies even a single view, so nothing
        # returned refers to the map, whose pages can go.
        copied = pa.concat_batches(views, memory_pool=copy_pool())
        mapped.drop_pages()
        return copied

    def copy_out(self, parts: np.ndarray, rows: np.ndarray, stripped: bool = False) -> CopiedRows:
        """Return the rows at (parts[i], rows[i]) copied into memory, one part's pages
        resident at a time (`stripped`: see `_copied`)."""
        if len(parts) == 0:
            return CopiedRows([self._part(0).batches[0].slice(0, 0)], [], [])
        copies = []
        source = np.empty(len(parts), dtype=np.int64)
        offset = np.empty(len(parts), dtype=np.int64)
        for i, part in enumerate(np.unique(parts).tolist()):
            selected = np.nonzero(parts == part)[0]
            copies.append(self._copied(part, rows[selected], stripped))
            source[selected] = i
            offset[selected] = np.arange(len(selected))
        return CopiedRows(copies, source.tolist(), offset.tolist())

    def take(self, parts: np.ndarray, rows: np.ndarray) -> pa.Table:
        """Return the rows at (parts[i], rows[i]), in that order, as one table (one chunk)."""
        return self.copy_out(parts, rows).take(0, len(parts))

    def gather(
        self, parts: np.ndarray, rows: np.ndarray, buffers: MediaBuffers | None = None
    ) -> pa.Table:
        """Return the rows at (parts[i], rows[i]), in that order, as one table (one chunk),
        their media bytes copied once (`gather_cuts` with one cut)."""
        return next(self.gather_cuts(parts, rows, [(0, len(parts))], buffers))

    def gather_cuts(
        self,
        parts: np.ndarray,
        rows: np.ndarray,
        cuts: list[tuple[int, int]],
        buffers: MediaBuffers | None = None,
    ) -> Iterator[pa.Table]:
        """Yield, per [start, stop) range of `cuts` (consecutive, from 0), the rows at
        (parts[i], rows[i]) for i in it, in that order, as one table (one chunk), their
        media bytes copied once.

        `copy_out` copies rows out of the maps part by part, then `take` copies them again
        into their order: two copies of every byte, most of them media. Here only the rest
        of each row (ids, text, media paths: small) goes that way (a vectorized `take` per
        part instead cost more on the bench's rows, ~30 against ~14 ms a batch: Arrow's
        take of nested columns across a part's batches); the media bytes are read
        from the part files (`preadv`, page cache to memory: the one copy) straight into
        their place in one buffer per media column, and never mapped.
        Where a part is not mapped (an object store's) or its media cannot be read by
        position, the rows are copied out as `take` does; the table is the same either way.
        `buffers` (one shard task's) lends the buffers the media bytes are read into.

        The rest of the rows is copied out for several cuts at once, up to
        `LIGHT_WINDOW_BYTES` of it: a copy out of a part costs ~50 us whatever its rows
        (Arrow's concatenation of a nested schema), and a cut of 256 rows of a corpus spread
        over 77 parts made one per part, ~0.4 of the gather's CPU on the bench's 974 MB;
        per window of cuts, one per part."""
        n = len(parts)
        unique = np.unique(parts).tolist()
        if n == 0 or not hasattr(os, "preadv") or not all(self._readable(p) for p in unique):
            for start, stop in cuts:
                yield self.take(parts[start:stop], rows[start:stop])
            return
        light = self._light_bytes(parts, rows)
        first = 0
        while first < len(cuts):
            last, total = first, 0
            while last < len(cuts):
                start, stop = cuts[last]
                total += int(light[start:stop].sum())
                if last > first and total > LIGHT_WINDOW_BYTES:
                    break
                last += 1
            begin, end = cuts[first][0], cuts[last - 1][1]
            window = self.copy_out(parts[begin:end], rows[begin:end], stripped=True)
            # Each cut's rows taken into their order from the window's copies made one
            # (light rows: Arrow's take beats concatenating one-row slices, ~3 against
            # ~5 ms a cut of 256 rows).
            copied = pa.concat_batches(window.batches, memory_pool=copy_pool())
            starts = np.cumsum([0] + [b.num_rows for b in window.batches])
            order = starts[np.asarray(window.source, np.int64)] + np.asarray(window.offset)
            del window
            for start, stop in cuts[first:last]:
                taken = copied.take(pa.array(order[start - begin : stop - begin]))
                table = pa.Table.from_batches([taken])
                del taken
                yield self._with_media(table, parts[start:stop], rows[start:stop], buffers)
                del table
            del copied
            first = last

    def _light_bytes(self, parts: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Return an estimate of each row's bytes without its media bytes: the mean of its
        mapped batch's."""
        sizes = np.empty(len(parts), dtype=np.int64)
        for part in np.unique(parts).tolist():
            selected = np.nonzero(parts == part)[0]
            mapped = self._part(part)
            batch_of, _ = mapped.locate(rows[selected])
            per_row = [
                -(-mapped.stripped(b).get_total_buffer_size() // max(1, batch.num_rows))
                for b, batch in enumerate(mapped.batches)
            ]
            sizes[selected] = np.asarray(per_row, dtype=np.int64)[batch_of]
        return sizes

    def _with_media(
        self, table: pa.Table, parts: np.ndarray, rows: np.ndarray, buffers: MediaBuffers | None
    ) -> pa.Table:
        """Return `table` (the rows at (parts[i], rows[i]) copied out stripped) with their
        media bytes read from the part files into place."""
        n = len(parts)
        unique = np.unique(parts).tolist()
        batch_of = np.empty(n, dtype=np.int64)
        local = np.empty(n, dtype=np.int64)
        for part in unique:
            selected = np.nonzero(parts == part)[0]
            batch_of[selected], local[selected] = self._part(part).locate(rows[selected])
        where = list(zip(parts.tolist(), batch_of.tolist(), local.tolist(), strict=True))
        for i, field in enumerate(table.schema):
            if field.type == MEDIA_LIST:
                media = self._read_media(field.name, where, buffers)
                column = _with_bytes(table.column(i).chunk(0), media)
                table = table.set_column(i, field, column)
        for part in unique:
            self._part(part).drop_pages()
        return table

    def _readable(self, part: int) -> bool:
        mapped = self._part(part)
        return all(mapped.stripped(b) is not None for b in range(len(mapped.batches)))

    def _read_media(
        self,
        column: str,
        where: list[tuple[int, int, int]],
        buffers: MediaBuffers | None = None,
    ) -> tuple[pa.Buffer, np.ndarray]:
        """Return the media bytes of `column` of the rows at `where` ((part, batch, row in
        batch) each), in row and item order, read from the part files into one buffer, and
        their value offsets in it."""
        reads: list[tuple[int, int, int]] = []  # (fd, file position, length) per item
        for part, b, row in where:
            mapped = self._parts[part]
            media = mapped.media_bytes(b, column)
            assert media is not None  # `_readable`
            first, last = media.list_offsets[row], media.list_offsets[row + 1]
            if first == last:
                continue
            fd, at = mapped.fd(), media.position
            ends = media.value_offsets[first : last + 1].tolist()
            reads.extend((fd, at + a, z - a) for a, z in zip(ends, ends[1:], strict=False))
        lengths = np.array([r[2] for r in reads], np.int64)
        offsets = np.zeros(len(reads) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        size = int(offsets[-1])
        if buffers is None:
            buffer = pa.allocate_buffer(size, memory_pool=copy_pool())
            view = memoryview(buffer).cast("B")
        else:
            buffer, view = buffers.lend(size)
        for (fd, position, length), at in zip(reads, offsets.tolist(), strict=False):
            if length and os.preadv(fd, [view[at : at + length]], position) != length:
                raise OSError(f"a part file ends before the media bytes it lists (at {position})")
        return buffer, offsets

    def release(self) -> None:
        """Close every part (the maps go when nothing refers to their rows any more)."""
        for mapped in self._parts.values():
            mapped.close()
        self._parts.clear()


def _with_bytes(column: pa.Array, media: tuple[pa.Buffer, np.ndarray]) -> pa.Array:
    """Return a media list column copied out stripped (`_MappedPart.stripped`) with its
    items' bytes put back: `media` (a buffer and the items' value offsets in it, in order)."""
    data, offsets = media
    values = column.values
    binary = values.field("bytes")
    first = int(column.offsets[0].as_py()) if len(column) else 0
    if first or len(binary) != len(offsets) - 1 or binary.offset or values.offset:
        raise ValueError("a stripped media column does not hold exactly its rows' items")
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError("a batch's media bytes exceed a binary array's 2 GiB")
    filled = pa.Array.from_buffers(
        pa.binary(),
        len(binary),
        [binary.buffers()[0], pa.py_buffer(offsets.astype(np.int32)), data],
        binary.null_count,
    )
    return _with_binary(column, filled)


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
