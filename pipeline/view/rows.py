"""A committed version's rows, read from its shards on demand, one page at a time.

Nothing here holds a version in memory. A page scans the shards in manifest order, only
the columns it shows (never the media bytes: Parquet reads the `path` leaf of `images` and
`audios` alone, an Arrow IPC shard is memory-mapped), skips whole shards by split and whole
row groups by the min/max statistics of `id` (rows are in id order within a shard), and
stops as soon as it has one row more than the page. Like datasette's tables, the next page
is a key, not an offset: (shard, last id), so page 400 costs what page 1 costs.
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
from pipeline.store.shards import read_shard_batches, shard_format

PAGE_SIZE = 25
MODALITIES = ("text", "image", "audio")
KINDS = ("original", "variant")
MEDIA_COLUMNS = ("images", "audios")
# The columns a page shows, media by their paths only (Parquet leaf names).
_SHOWN = ("id", "parent_id", "source", "split", "character", "messages", "augmentation")
_MEDIA_PATHS = tuple(f"{m}.list.element.path" for m in MEDIA_COLUMNS)
_TOKEN = re.compile(r"^(\d{1,6})\.([A-Za-z0-9_-]{1,128})$")


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
    """Where the next page starts: after record `after_id` in shard number `shard`."""

    shard: int
    after_id: str

    def __str__(self) -> str:
        return f"{self.shard}.{self.after_id}"

    @classmethod
    def parse(cls, text: str | None) -> PageToken | None:
        """Return the token in `text` (None for none); raise ValueError for a malformed one."""
        if not text:
            return None
        m = _TOKEN.match(text)
        if not m:
            raise ValueError(f"not a page token: {text!r}")
        return cls(int(m.group(1)), m.group(2))


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
        after_id: str | None = None,
        only_id: str | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Yield a shard's batches of `columns` (shown columns when None), skipping row
        groups that hold no id above `after_id` or cannot hold `only_id`."""
        path = self._path(shard)
        parquet = shard_format(path) == "parquet"
        wanted = columns or self._shown_columns(parquet)
        if not parquet:
            yield from read_shard_batches(path, columns=wanted, fs=self.store.fs)
            return
        import pyarrow.parquet as pq

        with self.store.fs.open_input(path) as source, pq.ParquetFile(source) as f:
            groups = [
                i
                for i in range(f.num_row_groups)
                if _group_may_hold(f.metadata, i, after_id, only_id)
            ]
            # One row group at a time: a page that fills stops decoding where it is.
            for group in groups:
                yield from f.iter_batches(row_groups=[group], columns=wanted)

    def page(
        self, where: RowFilter, after: PageToken | None = None, size: int = PAGE_SIZE
    ) -> RowPage:
        """Return the rows matching `where` that follow `after`, at most `size` of them."""
        rows: list[dict[str, Any]] = []
        scanned = 0
        start = after.shard if after else 0
        for number in range(start, len(self.shards)):
            shard = self.shards[number]
            if where.split and shard.split != where.split:
                continue
            after_id = after.after_id if after and number == after.shard else None
            for batch in self._batches(shard, after_id=after_id):
                scanned += batch.num_rows
                hits = batch.filter(_matches(batch, where, after_id))
                for row in display_rows(hits.slice(0, size + 1 - len(rows))):
                    if len(rows) == size:
                        return RowPage(rows, PageToken(rows[-1]["_shard"], rows[-1]["id"]), scanned)
                    rows.append({**row, "_shard": number})
        return RowPage(rows, None, scanned)

    def record(self, record_id: str) -> dict[str, Any] | None:
        """Return one record in display form (media as paths), or None when absent."""
        for number, shard in enumerate(self.shards):
            for batch in self._batches(shard, only_id=record_id):
                hit = batch.filter(pc.equal(batch["id"], record_id))
                if hit.num_rows:
                    return {**display_rows(hit)[0], "_shard": number}
        return None

    def media(self, record_id: str, column: str, index: int) -> bytes | None:
        """Return the bytes of media item `index` of `column` of one record, or None."""
        if column not in MEDIA_COLUMNS:
            return None
        for shard in self.shards:
            for batch in self._batches(shard, columns=["id", column], only_id=record_id):
                hit = batch.filter(pc.equal(batch["id"], record_id))
                if hit.num_rows:
                    items = hit[column][0].as_py() or []
                    return items[index]["bytes"] if 0 <= index < len(items) else None
        return None

    def scan(self, columns: list[str], split: str | None = None) -> Iterator[pa.RecordBatch]:
        """Yield `columns` of every row (of one split), batch by batch: sums over a version."""
        for shard in self.shards:
            if split is None or shard.split == split:
                yield from self._batches(shard, columns=columns)


def _group_may_hold(metadata: Any, group: int, after_id: str | None, only_id: str | None) -> bool:
    """Return whether a Parquet row group may hold the rows asked for, from its id stats."""
    if after_id is None and only_id is None:
        return True
    leaves = metadata.schema
    column = next((i for i in range(len(leaves)) if leaves.column(i).path == "id"), None)
    if column is None:
        return True
    stats = metadata.row_group(group).column(column).statistics
    if stats is None or not stats.has_min_max:
        return True
    if after_id is not None and stats.max <= after_id:
        return False
    return only_id is None or stats.min <= only_id <= stats.max


def _any_item(lists: pa.Array, test: Any) -> np.ndarray:
    """Return per row whether any item of a list column passes `test` (on the flat items)."""
    mask = np.zeros(len(lists), dtype=bool)
    flat = pc.list_flatten(lists)
    if len(flat):
        passed = pc.fill_null(test(flat), False)
        mask[pc.filter(pc.list_parent_indices(lists), passed).to_numpy()] = True
    return mask


def _matches(batch: pa.RecordBatch, where: RowFilter, after_id: str | None) -> pa.Array:
    """Return the boolean mask of the rows of `batch` that `where` keeps after `after_id`."""
    mask = np.ones(batch.num_rows, dtype=bool)

    def keep(condition: Any) -> None:
        nonlocal mask
        if isinstance(condition, np.ndarray):
            mask &= condition
        else:
            mask &= pc.fill_null(condition, False).to_numpy(zero_copy_only=False)

    if after_id is not None:
        keep(pc.greater(batch["id"], after_id))
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
            return pa.array(np.zeros(batch.num_rows, dtype=bool))
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
    return pa.array(mask)


def _paths_only(column: pa.Array) -> pa.Array:
    """Return a media column with its items' `path` only (no bytes copied)."""
    values = column.values
    if not isinstance(column, pa.ListArray) or values.type.get_field_index("bytes") < 0:
        return column
    paths = pa.StructArray.from_arrays([pc.struct_field(values, "path")], ["path"])
    return pa.ListArray.from_arrays(column.offsets, paths, mask=column.is_null())


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
