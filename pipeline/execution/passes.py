"""The work of the data job's Ray tasks: ingest one source, run the record pass over slices
of the ingested parts, write one shard.

Workers write, the driver commits small facts (DESIGN.md): every task writes its own part
files through the store's filesystem and returns only what the driver needs to decide and
to commit: per record an id, keys and sizes, per task its counts, quarantine entries and
stats. No media byte travels back to the driver or through Ray's object store.

File names depend only on the task's input (the source, or the first slice of the task),
so a task that fails and is retried overwrites its own half-written files and nothing is
written twice; and the driver builds everything it publishes from the returned facts,
sorted by id, so results arriving in any order make the same version.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from augmenters.stats import AugmentStats
from pipeline.execution.provenance import media_entries
from pipeline.execution.variant_checks import variants_within_limits
from pipeline.recipe import MediaLimits, Recipe, SourceConfig
from pipeline.record.ids import canonical_json, media_digests
from pipeline.record.rejection import QuarantineEntry
from pipeline.record.schema import WORK_SCHEMA, records_to_table
from pipeline.stages.augment import AugmentStage
from pipeline.stages.dedup import DedupStage
from pipeline.stages.split import SplitStage
from pipeline.stages.validate import ValidateStage
from pipeline.store.manifest import ShardEntry
from pipeline.store.staging import PartSet, PartWriter, read_part, row_nbytes
from pipeline.store.writer import ShardPlan, ShardWriter

# Part files: big enough that per-file overhead vanishes, small enough to map cheaply.
PART_TARGET_BYTES = 16 * 1024 * 1024
PART_MAX_ROWS = 4096
# An ingest task buffers at most this much of a source before appending it to a part.
INGEST_CHUNK_ROWS = 256
INGEST_CHUNK_BYTES = 8 * 1024 * 1024

# What an ingest task returns per record: the facts the driver decides dedup, the split
# plan and cache hits on, and where the record lies.
KEYS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("key", pa.string()),  # exact-duplicate key (normalized turns + media bytes)
        ("group", pa.string()),  # split group
        ("content", pa.string()),  # sha256 of the whole record as read, media included
        ("images", pa.int32()),
        ("audios", pa.int32()),
        ("source", pa.string()),
        ("source_ref", pa.string()),
        ("part", pa.string()),
        ("row", pa.int64()),
    ]
)
# What a record-pass task returns per output row (originals and variants).
ROWS_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("id", pa.string()),
        ("parent_id", pa.string()),
        ("part", pa.string()),
        ("row", pa.int64()),
        ("nbytes", pa.int64()),
        ("stats", pa.string()),  # an augmented original's AugmentStats JSON (for the cache)
    ]
)


def content_hashes(table: pa.Table) -> list[str]:
    """Return per WORK row the sha256 of every field, media by the sha256 of their bytes."""
    images = media_digests(table["images"])
    audios = media_digests(table["audios"])
    paths = {c: _media_paths(table[c]) for c in ("images", "audios")}
    light = table.drop_columns(["images", "audios"]).to_pylist()
    out = []
    for i, row in enumerate(light):
        row["images"] = [images[i], paths["images"][i]]
        row["audios"] = [audios[i], paths["audios"][i]]
        out.append(hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest())
    return out


def _media_paths(column: pa.ChunkedArray) -> list[list[str | None]]:
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values = array.flatten().field("path").to_pylist()
    offsets = array.offsets.to_numpy(zero_copy_only=False) - array.offsets[0].as_py()
    return [values[offsets[r] : offsets[r + 1]] for r in range(len(array))]


# ---- ingest: one task per source, or per group of its files ----


@dataclass
class IngestOutcome:
    """What one source's ingest task read: per-record keys, parts, rejects, counts."""

    index: int
    keys: pa.Table
    records_in: int
    rejected: list[QuarantineEntry]
    unmapped_fields: dict[str, int]
    node: str = ""
    media: list[Any] = field(default_factory=list)  # InputFile pins of the source's media


def _keys_of(table: pa.Table, splitter: SplitStage, part: str, first_row: int) -> pa.Table:
    import pyarrow.compute as pc

    n = table.num_rows
    return pa.table(
        {
            "id": table["id"],
            "key": pa.array(DedupStage().keys(table), pa.string()),
            "group": pa.array(splitter.group_keys(table), pa.string()),
            "content": pa.array(content_hashes(table), pa.string()),
            "images": pc.list_value_length(table["images"]).cast(pa.int32()),
            "audios": pc.list_value_length(table["audios"]).cast(pa.int32()),
            "source": table["source"],
            "source_ref": table["source_ref"],
            "part": pa.array([part] * n, pa.string()),
            "row": pa.array(np.arange(first_row, first_row + n), pa.int64()),
        },
        schema=KEYS_SCHEMA,
    )


def ingest_source(
    index: int,
    source: SourceConfig,
    files: list[str] | None,
    book_entries: bool,
    recipe: Recipe,
    splitter: SplitStage,
    folder: str,
    fs: Any,
    source_fs: Any,
) -> IngestOutcome:
    """Read one source (or only its `files`, opened by `source_fs`) into part files under
    `folder` (on the store's `fs`); return its records' keys. `book_entries` as in
    `read_source`: one task per source reports what its characters files hold."""
    from pipeline.readers import SourceReadStats, read_source

    unmapped: Counter[str] = Counter()
    stats = SourceReadStats(unmapped_fields=unmapped)
    rejected: list[QuarantineEntry] = []
    keys: list[pa.Table] = []
    records_in = 0
    with PartWriter(folder, WORK_SCHEMA, PART_TARGET_BYTES, PART_MAX_ROWS, fs=fs) as parts:

        def flush(chunk: list[dict[str, Any]]) -> None:
            if chunk:
                table = records_to_table(chunk, WORK_SCHEMA)
                where = parts.write(table)
                keys.append(_keys_of(table, splitter, parts.paths[where.part], where.first_row))

        chunk: list[dict[str, Any]] = []
        chunk_bytes = 0
        records = read_source(
            source, recipe, stats, files=files, book_entries=book_entries, fs=source_fs
        )
        for item in records:
            records_in += 1
            if isinstance(item, QuarantineEntry):
                rejected.append(item)
                continue
            chunk.append(item)
            chunk_bytes += sum(len(m["bytes"] or b"") for m in item["images"] + item["audios"])
            if len(chunk) >= INGEST_CHUNK_ROWS or chunk_bytes >= INGEST_CHUNK_BYTES:
                flush(chunk)
                chunk, chunk_bytes = [], 0
        flush(chunk)
    table = pa.concat_tables(keys) if keys else KEYS_SCHEMA.empty_table()
    # The manifest pins every media file by its sha256: hashed here, beside the reading,
    # so the driver never reads a media byte (one task per source does it).
    media = media_entries(source, recipe, source_fs) if book_entries else []
    return IngestOutcome(index, table, records_in, rejected, dict(unmapped), _node_id(), media)


# ---- the record pass: validate -> split -> augment, one decode, per slice ----


@dataclass(frozen=True)
class Slice:
    """Rows [offset, offset + length) of one ingested part file."""

    part: str
    offset: int
    length: int


@dataclass
class PassContext:
    """What every record-pass task of a run shares (sent to the cluster once)."""

    fs: Any
    limits: MediaLimits
    duplicate_ids: pa.Array
    splitter: SplitStage
    augmenter: Any | None
    batch_size: int


@dataclass
class PassOutcome:
    """What one record-pass task made: its output rows, rejects and stats."""

    rows: pa.Table
    rejected: list[QuarantineEntry]
    stats: AugmentStats
    originals: int
    variants: int
    node: str = ""
    rejected_ids: dict[str, str] = field(default_factory=dict)  # id -> reason


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # outside Ray (tests call tasks directly)
        return ""


def record_pass(slices: list[Slice], path: str, ctx: PassContext) -> PassOutcome:
    """Validate, split and augment the records of `slices` (all but `ctx.duplicate_ids`);
    write what is kept, originals then their variants, to the part file `path`."""
    validate = ValidateStage(ctx.limits)
    dedup = DedupStage()
    augment = AugmentStage(ctx.augmenter)
    keep_pixels = augment.decodes_images
    stats = AugmentStats()
    rejected: list[QuarantineEntry] = []
    rejected_ids: dict[str, str] = {}
    originals = variants = 0
    index: list[pa.Table] = []
    with PartWriter(path, WORK_SCHEMA, fs=ctx.fs, single_file=True) as out:
        for batch in _batches(slices, ctx.fs, ctx.batch_size):
            kept = dedup.apply(batch, ctx.duplicate_ids).table
            assigned = ctx.splitter.apply(kept).table
            records = assigned.to_pylist()
            keep: list[int] = []
            made: list[dict[str, Any]] = []
            kept_stats: list[str | None] = []
            for i, record in enumerate(records):
                train = augment.augmenter is not None and record["split"] == "train"
                decoded: dict[tuple[str, int], Any] | None = {} if train and keep_pixels else None
                entry = validate.rejection(record, decoded)
                if entry is not None:
                    rejected.append(entry)
                    rejected_ids[record["id"]] = entry.reason
                    continue
                keep.append(i)
                if train:
                    produced, record_stats = augment.record_variants(record, decoded)
                    produced = variants_within_limits(produced, validate, record_stats)
                    made.extend(produced)
                    stats.merge(record_stats)
                    kept_stats.append(json.dumps(record_stats.to_dict(), sort_keys=True))
                else:
                    kept_stats.append(None)
            table = assigned.take(pa.array(keep, pa.int64()))
            if made:
                table = pa.concat_tables([table, records_to_table(made, WORK_SCHEMA)])
            originals += len(keep)
            variants += len(made)
            where = out.write(table)
            if where is not None:
                row_stats = kept_stats + [None] * len(made)
                index.append(_rows_of(table, path, where.first_row, row_stats))
    rows = pa.concat_tables(index) if index else ROWS_SCHEMA.empty_table()
    return PassOutcome(rows, rejected, stats, originals, variants, _node_id(), rejected_ids)


def _rows_of(
    table: pa.Table, path: str, first_row: int, stats: list[str | None] | None = None
) -> pa.Table:
    n = table.num_rows
    return pa.table(
        {
            "split": table["split"],
            "id": table["id"],
            "parent_id": table["parent_id"],
            "part": pa.array([path] * n, pa.string()),
            "row": pa.array(np.arange(first_row, first_row + n), pa.int64()),
            "nbytes": pa.array(row_nbytes(table), pa.int64()),
            "stats": pa.array(stats if stats is not None else [None] * n, pa.string()),
        },
        schema=ROWS_SCHEMA,
    )


def _batches(slices: list[Slice], fs: Any, batch_size: int):
    for s in slices:
        table = read_part(s.part, fs).slice(s.offset, s.length)
        for offset in range(0, table.num_rows, batch_size):
            yield table.slice(offset, batch_size)


def rebase_rows(
    part: str, rows: list[int], stats: list[str | None], recipe_hash: str, path: str, fs: Any
) -> tuple[pa.Table, str]:
    """Copy rows of a cached part made under another recipe into the part file `path`, with
    their variants' ids and `augmentation.recipe_hash` made by `recipe_hash`; return their
    ROWS_SCHEMA rows and the node. Nothing is augmented again: the variants' content
    depends on the seed, the record and its ops only (which the cache key pins)."""
    import pyarrow.compute as pc

    from pipeline.record.ids import variant_id

    table = read_part(part, fs).take(pa.array(rows, pa.int64()))
    is_variant = pc.is_valid(table["parent_id"]).to_numpy(zero_copy_only=False)
    originals = table.filter(pa.array(~is_variant))
    # Variants are rebuilt from dicts, as the augment stage builds them, so their Arrow
    # buffers (and the shard bytes) are those of a run from scratch.
    variants = table.filter(pa.array(is_variant)).to_pylist()
    for variant in variants:
        variant["id"] = variant_id(
            variant["parent_id"], recipe_hash, variant["augmentation"]["copy"]
        )
        variant["augmentation"]["recipe_hash"] = recipe_hash
    out_table = pa.concat_tables([originals, records_to_table(variants, WORK_SCHEMA)])
    original_stats = [s for s, v in zip(stats, is_variant, strict=True) if not v]
    with PartWriter(path, WORK_SCHEMA, fs=fs, single_file=True) as out:
        out.write(out_table)
    row_stats = original_stats + [None] * len(variants)
    return _rows_of(out_table, path, 0, row_stats), _node_id()


# ---- shards: one task per shard ----


def write_shard(plan: ShardPlan, paths: list[str], writer: ShardWriter) -> tuple[ShardEntry, str]:
    """Write one planned shard from the part files `paths` (the plan's `part` numbers index
    them); return its manifest entry and the node that wrote it."""
    return writer.write_shard(plan, PartSet(paths, writer.fs)), _node_id()
