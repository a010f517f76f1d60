"""A committed version's rows, read from its shards on demand, one page at a time.

Nothing here holds a version in memory, and nothing assumes an order of the rows within a
shard (the writer leaves them in the order the record pass wrote them; versions written
before lie in id order). A page scans the shards in manifest order, only the columns it
shows (never the media bytes: Parquet reads the `path` leaf of `images` and `audios` alone,
an Arrow IPC shard is memory-mapped), skips whole shards by split, and stops as soon as it
has one row more than the page. The next page starts at a position, (shard, row): the row
offset within the shard counted over all its rows, whatever the filter. A Parquet shard
skips the row groups that end before it by the row counts in its footer, an IPC shard counts
its batches' rows, so page 400 costs what page 1 costs.

A single record (its page, its media) is found by its shard's row-digest sidecar
(`store/row_digest.py`: the ids in shard row order), which gives the shard and the row; only
the row group (or batch) holding that row is decoded. Shards listed without a sidecar
(manifest format 1) are scanned for the id instead, row groups pruned by their `id`
statistics (those versions were written in id order, so the statistics do prune).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store.manifest import Manifest, ShardEntry
from pipeline.store.read import Store
from pipeline.store.row_digest import read_row_digests
from pipeline.store.shards import read_shard_batches, shard_format

PAGE_SIZE = 25
MODALITIES = ("text", "image", "audio")
KINDS = ("original", "variant")
MEDIA_COLUMNS = ("images", "audios")
# The columns a page shows, media by their paths only (Parquet leaf names).
_SHOWN = ("id", "parent_id", "source", "split", "character", "messages", "augmentation")
_MEDIA_PATHS = tuple(f"{m}.list.element.path" for m in MEDIA_COLUMNS)
_TOKEN = re.compile(r"^(\d{1,6})\.(\d{1,12})$")


@dataclass(frozen=True)
class RowFilter:
    """What a rows page keeps: every field set must hold (None: any)."""

    split: str | None = None
    source: str | None = None
    character: str | None = None
    modality: str | None = None  # text (no media), image, audio
    kind: str | None = None  # original or variant
    flag: str | None = None  # a flag of the `quality` column
    q: str | None = None  # text search over every turn, case-insensitive

    @classmethod
    def from_query(cls, query: dict[str, str]) -> RowFilter:
        """Return the filter a page's query string asks for; raise ValueError on a bad value."""
        values = {f.name: (query.get(f.name) or "").strip() or None for f in fields(cls)}
        if values["modality"] not in (None, *MODALITIES):
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}")
        if values["kind"] not in (None, *KINDS):
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        return cls(**values)

    def query(self) -> dict[str, str]:
        """Return the set fields, as a page's query string carries them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    @property
    def is_empty(self) -> bool:
        return not self.query()


@dataclass(frozen=True)
class PageToken:
    """Where the next page starts: at row offset `row` (0-based, over all the rows of the
    shard, before any filter) of shard number `shard`."""

    shard: int
    row: int

    def __str__(self) -> str:
        return f"{self.shard}.{self.row}"

    @classmethod
    def parse(cls, text: str | None) -> PageToken | None:
        """Return the token in `text` (None for none); raise ValueError for a malformed one
        (a token of the viewer before, `<shard>.<last id>`, among them)."""
        if not text:
            return None
        m = _TOKEN.match(text)
        if not m:
            raise ValueError(f"not a page token (<shard>.<row>): {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))


@dataclass
class RowPage:
    """One page of rows (display form: media as paths) and where the next one starts."""

    rows: list[dict[str, Any]]
    next: PageToken | None
    scanned: int  # rows looked at to fill the page


class VersionRows:
    """Reads one committed version's rows: pages, single records and media items."""

    def __init__(self, store: Store, manifest: Manifest):
        self.store = store
        self.manifest = manifest
        self.shards: list[ShardEntry] = list(manifest.shards)
        self.schema = self._schema()
        self.has_quality = "quality" in self.schema.names
        self._ids: dict[int, pa.ChunkedArray] = {}  # shard number -> its sidecar's ids

    def _path(self, shard: ShardEntry) -> str:
        return os.path.join(self.store.version_dir(self.manifest.number), shard.path)

    def _schema(self) -> pa.Schema:
        if not self.shards:
            return pa.schema([])
        path = self._path(self.shards[0])
        if shard_format(path) == "parquet":
            import pyarrow.parquet as pq

            with self.store.fs.open_input(path) as source:
                return pq.ParquetFile(source).schema_arrow
        for batch in read_shard_batches(path, fs=self.store.fs):
            return batch.schema
        return pa.schema([])

    def _shown_columns(self, parquet: bool) -> list[str]:
        names = [c for c in (*_SHOWN, "references", "quality") if c in self.schema.names]
        if parquet:
            return names + [p for p in _MEDIA_PATHS if p.split(".")[0] in self.schema.names]
        return names + [m for m in MEDIA_COLUMNS if m in self.schema.names]

    def _batches(
        self,
        shard: ShardEntry,
        columns: list[str] | None = None,
        start: int = 0,
        only_id: str | None = None,
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Yield (row offset in the shard, batch) of a shard's `columns` (the shown ones when
        None) from row `start` on. Parquet skips the row groups that end at or before `start`
        by the row counts of its footer, and with `only_id` those whose `id` statistics
        rule that id out; an IPC shard counts its batches' rows (memory-mapped locally: a
        skipped batch is not read)."""
        path = self._path(shard)
        parquet = shard_format(path) == "parquet"
        wanted = columns or self._shown_columns(parquet)
        if not parquet:
            yield from _from_row(
                read_shard_batches(path, columns=wanted, fs=self.store.fs), 0, start
            )
            return
        import pyarrow.parquet as pq

        with self.store.fs.open_input(path) as source, pq.ParquetFile(source) as f:
            offset = 0
            for group in range(f.num_row_groups):
                count = f.metadata.row_group(group).num_rows
                if offset + count > start and _group_may_hold(f.metadata, group, only_id):
                    # One row group at a time: a page that fills stops decoding where it is.
                    batches = f.iter_batches(row_groups=[group], columns=wanted)
                    yield from _from_row(batches, offset, start)
                offset += count

    def page(
        self, where: RowFilter, after: PageToken | None = None, size: int = PAGE_SIZE
    ) -> RowPage:
        """Return the rows matching `where` from position `after` on, at most `size` of them;
        the next page's token is the position after the last row returned."""
        if after is not None and (
            after.shard >= len(self.shards) or after.row > self.shards[after.shard].rows
        ):
            raise ValueError(f"page token {after} is past the version's rows")
        rows: list[dict[str, Any]] = []
        scanned = 0
        start = after.shard if after else 0
        for number in range(start, len(self.shards)):
            shard = self.shards[number]
            if where.split and shard.split != where.split:
                continue
            first = after.row if after and number == after.shard else 0
            for offset, batch in self._batches(shard, start=first):
                scanned += batch.num_rows
                hits = np.flatnonzero(_matches(batch, where))[: size + 1 - len(rows)]
                for position, row in zip(hits, display_rows(batch.take(hits)), strict=True):
                    if len(rows) == size:
                        last = rows[-1]
                        return RowPage(rows, PageToken(last["_shard"], last["_row"] + 1), scanned)
                    rows.append({**row, "_shard": number, "_row": offset + int(position)})
        return RowPage(rows, None, scanned)

    def _shard_ids(self, number: int) -> pa.ChunkedArray | None:
        """Return the ids of shard `number` in row order, from its row-digest sidecar (None
        where the manifest lists none). Kept once read: ~40 bytes a row, and every record
        and media request looks ids up."""
        ids = self._ids.get(number)
        shard = self.shards[number]
        if ids is None and shard.row_digests is not None:
            folder = self.store.version_dir(self.manifest.number)
            digests = read_row_digests(os.path.join(folder, shard.row_digests), self.store.fs)
            ids = self._ids[number] = digests["id"]
        return ids

    def _find(self, record_id: str, columns: list[str] | None) -> tuple[int, pa.RecordBatch] | None:
        """Return (shard number, the record's row as a one-row batch of `columns`), or None.
        Raise ShardRowsMismatch where a sidecar names a row that holds another id."""
        for number, shard in enumerate(self.shards):
            ids = self._shard_ids(number)
            if ids is None:  # no sidecar (manifest format 1): scan for the id
                for _, batch in self._batches(shard, columns, only_id=record_id):
                    hit = batch.filter(pc.equal(batch["id"], record_id))
                    if hit.num_rows:
                        return number, hit.slice(0, 1)
                continue
            row = pc.index(ids, record_id).as_py()
            if row < 0:
                continue
            batch = next((b for _, b in self._batches(shard, columns, start=row)), None)
            found = batch["id"][0].as_py() if batch is not None and batch.num_rows else None
            if found != record_id:
                raise ShardRowsMismatch(
                    f"{shard.row_digests} names {record_id} at row {row} of {shard.path}, which"
                    f" holds {found or 'no row'}: the version is damaged (`roleforge verify`)"
                )
            return number, batch.slice(0, 1)
        return None

    def record(self, record_id: str) -> dict[str, Any] | None:
        """Return one record in display form (media as paths), or None when absent."""
        found = self._find(record_id, None)
        if found is None:
            return None
        number, row = found
        return {**display_rows(row)[0], "_shard": number}

    def media(self, record_id: str, column: str, index: int) -> bytes | None:
        """Return the bytes of media item `index` of `column` of one record, or None."""
        if column not in MEDIA_COLUMNS:
            return None
        found = self._find(record_id, ["id", column])
        if found is None:
            return None
        items = found[1][column][0].as_py() or []
        return items[index]["bytes"] if 0 <= index < len(items) else None

    def scan(self, columns: list[str], split: str | None = None) -> Iterator[pa.RecordBatch]:
        """Yield `columns` of every row (of one split), batch by batch: sums over a version."""
        for shard in self.shards:
            if split is None or shard.split == split:
                for _, batch in self._batches(shard, columns=columns):
                    yield batch


class ShardRowsMismatch(RuntimeError):
    """A shard's row-digest sidecar names a row of the shard that holds another record."""


def _from_row(
    batches: Iterator[pa.RecordBatch], offset: int, start: int
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Yield (row offset, batch) of `batches` (the first at row `offset`) from row `start`
    on: batches that end before it are skipped, the one holding it is sliced."""
    for batch in batches:
        end = offset + batch.num_rows
        if end > start:
            skip = max(0, start - offset)
            yield offset + skip, batch.slice(skip)
        offset = end


def _group_may_hold(metadata: Any, group: int, only_id: str | None) -> bool:
    """Return whether a Parquet row group may hold record `only_id` (any when None), from
    its id statistics: a shard without a sidecar is scanned, and such shards (manifest
    format 1) lie in id order, so the statistics leave one row group."""
    if only_id is None:
        return True
    leaves = metadata.schema
    column = next((i for i in range(len(leaves)) if leaves.column(i).path == "id"), None)
    if column is None:
        return True
    stats = metadata.row_group(group).column(column).statistics
    if stats is None or not stats.has_min_max:
        return True
    return stats.min <= only_id <= stats.max


def _any_item(lists: pa.Array, test: Any) -> np.ndarray:
    """Return per row whether any item of a list column passes `test` (on the flat items)."""
    mask = np.zeros(len(lists), dtype=bool)
    flat = pc.list_flatten(lists)
    if len(flat):
        passed = pc.fill_null(test(flat), False)
        mask[pc.filter(pc.list_parent_indices(lists), passed).to_numpy()] = True
    return mask


def _matches(batch: pa.RecordBatch, where: RowFilter) -> np.ndarray:
    """Return the boolean mask of the rows of `batch` that `where` keeps."""
    mask = np.ones(batch.num_rows, dtype=bool)

    def keep(condition: Any) -> None:
        nonlocal mask
        if isinstance(condition, np.ndarray):
            mask &= condition
        else:
            mask &= pc.fill_null(condition, False).to_numpy(zero_copy_only=False)

    if where.split:
        keep(pc.equal(batch["split"], where.split))
    if where.source:
        keep(pc.equal(batch["source"], where.source))
    if where.character:
        keep(pc.equal(pc.struct_field(batch["character"], "name"), where.character))
    if where.kind:
        keep(
            pc.is_null(batch["parent_id"])
            if where.kind == "original"
            else pc.is_valid(batch["parent_id"])
        )
    if where.modality:
        images = pc.fill_null(pc.list_value_length(batch["images"]), 0)
        audios = pc.fill_null(pc.list_value_length(batch["audios"]), 0)
        if where.modality == "image":
            keep(pc.greater(images, 0))
        elif where.modality == "audio":
            keep(pc.greater(audios, 0))
        else:
            keep(pc.and_(pc.equal(images, 0), pc.equal(audios, 0)))
    if where.flag:
        if "quality" not in batch.schema.names:
            return np.zeros(batch.num_rows, dtype=bool)
        flags = pc.struct_field(batch["quality"], "flags")
        keep(_any_item(flags, lambda items: pc.equal(items, where.flag)))
    if where.q:
        keep(
            _any_item(
                batch["messages"],
                lambda turns: pc.match_substring(
                    pc.struct_field(turns, "content"), where.q, ignore_case=True
                ),
            )
        )
    return mask


def _paths_only(column: pa.Array) -> pa.Array:
    """Return a media column with its items' `path` only (no bytes copied)."""
    values = column.values
    if not isinstance(column, pa.ListArray) or values.type.get_field_index("bytes") < 0:
        return column
    offsets = column.offsets
    if column.offset:
        # A sliced column (a row read at its position): `from_arrays` takes a mask only
        # with offsets that are not a slice, so they are rebased onto a slice of the items.
        start = offsets[0].as_py()
        values = values.slice(start, offsets[-1].as_py() - start)
        offsets = pc.subtract(offsets, start)
    paths = pa.StructArray.from_arrays([pc.struct_field(values, "path")], ["path"])
    return pa.ListArray.from_arrays(offsets, paths, mask=column.is_null())


def display_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """Return rows as dicts for a page: media items as their paths, ops' params as text."""
    arrays = {
        name: _paths_only(batch[name]) if name in MEDIA_COLUMNS else batch[name]
        for name in batch.schema.names
    }
    rows = pa.RecordBatch.from_pydict(arrays).to_pylist()
    for row in rows:
        for column in MEDIA_COLUMNS:
            row[column] = row.get(column) or []
        row.setdefault("quality", None)
    return rows
