"""Row digests: one sha256 per record, over every column, whatever batch or shard holds it.

A row's digest is the sha256 of the canonical JSON of the row, each media list given as
its items' `{"path", "sha256"}` (the sha256 of the media bytes): it depends on the row's
values alone, never on the batch, chunk or shard it was read from. The shard writer computes
them from the Arrow rows it writes and keeps them in a sidecar per shard
(`_rows/<split>-<i>.parquet`: `id`, `row_sha256`, in shard order; the `_` prefix keeps it
out of every loader's file patterns), listed with its sha256 in the manifest; the content id
(`manifest.content_id`) is a digest over the sorted (id, row digest) pairs, and `verify`
recomputes them (docs/ARCHITECTURE.md, "Store layout").
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record.ids import canonical_json, media_digests
from pipeline.record.schema import MEDIA_TYPE
from pipeline.store.parquet import read_parquet
from pipeline.store.shards import read_shard_batches

if TYPE_CHECKING:
    from pipeline.store.manifest import ShardEntry

ROWS_FOLDER = "_rows"
ROW_DIGEST_SCHEMA = pa.schema([("id", pa.string()), ("row_sha256", pa.string())])


def _media_items(column: pa.ChunkedArray) -> list[list[dict[str, Any]]]:
    """Return, per row of a media list column, its items as {"path", "sha256"}."""
    digests = media_digests(column)
    paths = [
        path
        for array in column.chunks  # combining the chunks would copy the media bytes
        for path in pa.ListArray.from_arrays(
            array.offsets, pc.struct_field(array.values, "path")
        ).to_pylist()
    ]
    return [
        [{"path": p, "sha256": d} for p, d in zip(row_paths or [], row_digests, strict=True)]
        for row_paths, row_digests in zip(paths, digests, strict=True)
    ]


def row_digests(table: pa.Table) -> list[str]:
    """Return one sha256 hex digest per row of `table`, over every column (media by the
    sha256 of their bytes, so no media byte becomes a Python object)."""
    media = [i for i, f in enumerate(table.schema) if f.type == pa.list_(MEDIA_TYPE)]
    values = table.select([i for i in range(table.num_columns) if i not in media]).to_pylist()
    for i in media:
        name = table.schema.field(i).name
        for row, items in zip(values, _media_items(table.column(i)), strict=True):
            row[name] = items
    return [hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest() for row in values]


def digest_table(ids: list[str], digests: list[str]) -> pa.Table:
    """Return the ROW_DIGEST_SCHEMA table of rows `ids` with their digests, in that order."""
    return pa.table({"id": ids, "row_sha256": digests}, schema=ROW_DIGEST_SCHEMA)


def row_digests_path(shard_path: str) -> str:
    """Return the sidecar of a shard, relative to the version folder like the shard:
    `_rows/<split>-<i>.parquet`. Without the shard's `-of-<n>` no pattern that names the
    shards (the card's `train-*.parquet`, Croissant's `*-of-*.parquet`, where `*` may
    cross folders) names a sidecar."""
    stem = posixpath.splitext(posixpath.basename(shard_path))[0]
    stem = re.sub(r"-of-\d+$", "", stem)
    return posixpath.join(posixpath.dirname(shard_path), ROWS_FOLDER, f"{stem}.parquet")


def write_row_digests(folder: str, shard_path: str, rows: pa.Table, fs: Any) -> tuple[str, str]:
    """Write the sidecar of shard `shard_path` (relative to `folder`), not yet fsynced (the
    commit's `fs.sync_tree` makes it durable with the shards); return its relative path
    and sha256."""
    import pyarrow.parquet as pq

    relative = row_digests_path(shard_path)
    path = os.path.join(folder, relative)
    fs.makedirs(os.path.dirname(path))
    raw = fs.open_output(path)
    try:
        # Uncompressed: hex digests and hashed ids do not compress.
        pq.write_table(rows, raw, compression="none", use_dictionary=False)
    finally:
        raw.close()
    return relative, fs.sha256(path)


def read_row_digests(path: str, fs: Any) -> pa.Table:
    """Return a sidecar's (id, row_sha256) rows, in shard order."""
    with fs.open_input(path) as source:
        return read_parquet(source)


class RowDigestsMismatch(ValueError):
    """A row-digest sidecar's bytes do not have the sha256 its manifest entry names."""


def read_checked_row_digests(path: str, sha256: str, fs: Any) -> pa.Table:
    """Return a sidecar's (id, row_sha256) rows, read once and checked against `sha256` (its
    manifest entry's); raise RowDigestsMismatch where they differ."""
    data = fs.read_bytes(path)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RowDigestsMismatch(f"{path}: row digests do not match the manifest")
    return read_parquet(data)


def shard_row_digests(path: str, fs: Any) -> pa.Table:
    """Return the (id, row_sha256) rows of the shard at `path`, recomputed from its rows."""
    ids: list[str] = []
    digests: list[str] = []
    for batch in read_shard_batches(path, fs=fs):
        table = pa.Table.from_batches([batch])
        ids.extend(table["id"].to_pylist())
        digests.extend(row_digests(table))
    return digest_table(ids, digests)


def add_row_digests(
    folder: str, shards: list[ShardEntry], fs: Any
) -> tuple[list[ShardEntry], list[pa.Table]]:
    """Return `shards` (files in `folder` written by other means: a tool, a test) with the
    sidecar of each written and listed, and their (id, row_sha256) tables for the content id."""
    entries, tables = [], []
    for shard in shards:
        rows = shard_row_digests(os.path.join(folder, shard.path), fs)
        path, sha256 = write_row_digests(folder, shard.path, rows, fs)
        entries.append(shard.model_copy(update={"row_digests": path, "row_digests_sha256": sha256}))
        tables.append(rows)
    return entries, tables
