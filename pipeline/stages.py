"""The record stages: validate, dedup, split, augment. Each transforms an Arrow table of
WORK records and knows nothing about Ray; `pipeline.run` decides where they execute.

A record that a stage rejects leaves as a QuarantineEntry with a reason (RecordRejected's,
or `stage_error` / `augment_error` for anything unexpected); its neighbours carry on.

The two pass functions at the bottom run stages over part files and return one table per
bounded batch. Anything that is not a record travels back in the `_side` column of a stub
row (a quarantine entry or augmentation stats), so one Ray dataset carries both and nothing
is dropped silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ids import canonical_json
from pipeline.quarantine import QuarantineEntry, RecordRejected
from pipeline.recipe import MediaLimits, SplitConfig
from pipeline.schema import (
    AUDIO_PLACEHOLDER,
    IMAGE_PLACEHOLDER,
    WORK_SCHEMA,
    count_placeholders,
    records_to_table,
)
from pipeline.staging import read_part

DEDUP_KEY_COLUMN = "_dedup_key"
SIDE_COLUMN = "_side"
# What a pass returns: WORK records plus the dedup key (pass one) and side messages.
PASS_SCHEMA = WORK_SCHEMA.append(pa.field(DEDUP_KEY_COLUMN, pa.string())).append(
    pa.field(SIDE_COLUMN, pa.string())
)
EXCERPT_CHARS = 200


def empty_augment_stats() -> dict[str, Any]:
    """Return augmentation stats with every counter at zero (the shape merge_stats keeps)."""
    return {
        "variants": 0,
        "empty_variants": 0,
        "ops": {},
        "flip_guard_skipped": 0,
        "flip_guard_swapped": 0,
        "text_skipped": 0,
    }


def quarantine_entry(
    stage: str, record: dict[str, Any], reason: str, message: str
) -> QuarantineEntry:
    """Return the quarantine entry of one rejected record, with a short text excerpt."""
    messages = record.get("messages") or []
    excerpt = next((m.get("content") for m in messages if m.get("content")), None)
    return QuarantineEntry(
        stage=stage,
        reason=reason,
        message=message,
        source=record.get("source") or "",
        source_ref=record.get("source_ref") or "",
        record_id=record.get("id"),
        excerpt=excerpt[:EXCERPT_CHARS] if excerpt else None,
    )


@dataclass
class StageResult:
    """The rows a stage kept (or produced), the records it rejected, and its stats."""

    table: pa.Table
    rejected: list[QuarantineEntry] = field(default_factory=list)
    stats: dict[str, Any] | None = None


class ValidateStage:
    """Keeps records that hold every invariant of DESIGN.md; rejects the rest with a reason."""

    name = "validate"

    def __init__(self, limits: MediaLimits):
        from pipeline.validate import validate_record

        self.limits = limits
        self._validate = validate_record

    def apply(self, table: pa.Table) -> StageResult:
        keep: list[int] = []
        rejected: list[QuarantineEntry] = []
        # Dicts are needed by validate_record; the kept rows are taken from the original
        # table, so their media buffers are never re-built.
        for i, record in enumerate(table.to_pylist()):
            try:
                self._validate(record, self.limits)
            except RecordRejected as exc:
                rejected.append(quarantine_entry(self.name, record, exc.reason, exc.message))
            except Exception as exc:  # a bug or a library error on one record: quarantine it
                message = f"{type(exc).__name__}: {exc}"
                rejected.append(quarantine_entry(self.name, record, "stage_error", message))
            else:
                keep.append(i)
        return StageResult(table.take(pa.array(keep, pa.int64())), rejected)


def media_digests(column: pa.ChunkedArray) -> list[list[str]]:
    """Return, per row of a media list column, the sha256 of each item's bytes."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values = array.flatten().field("bytes")
    offsets = array.offsets.to_numpy(zero_copy_only=False) - array.offsets[0].as_py()
    digests = []
    for row in range(len(array)):
        items = []
        for j in range(offsets[row], offsets[row + 1]):
            scalar = values[int(j)]
            # as_buffer() is a zero-copy view of the media bytes.
            data = scalar.as_buffer() if scalar.is_valid else b""
            items.append(hashlib.sha256(data).hexdigest())
        digests.append(items)
    return digests


class DedupStage:
    """Computes exact-duplicate keys: same normalized messages and same media bytes."""

    name = "dedup"

    def keys(self, table: pa.Table) -> list[str]:
        """Return one key per row; rows with equal keys are exact duplicates."""
        images = media_digests(table["images"])
        audios = media_digests(table["audios"])
        keys = []
        for row, messages in enumerate(table["messages"].to_pylist()):
            normalized = [
                [m["role"], m.get("name"), (m.get("content") or "").strip()] for m in messages
            ]
            payload = canonical_json([normalized, images[row], audios[row]])
            keys.append(hashlib.sha256(payload.encode("utf-8")).hexdigest())
        return keys

    @staticmethod
    def duplicate_ids(index: pa.Table) -> pa.Array:
        """Return the ids to drop from an (id, key) table: all but the smallest id per key."""
        if index.num_rows == 0:
            return pa.array([], pa.string())
        order = pc.sort_indices(index, sort_keys=[("key", "ascending"), ("id", "ascending")])
        ordered = index.take(order)
        keys = ordered["key"].combine_chunks()
        # After sorting, a row whose key equals the previous row's is a duplicate of a
        # record with a smaller id.
        same_as_previous = pc.equal(keys.slice(1), keys.slice(0, len(keys) - 1))
        mask = pa.concat_arrays([pa.array([False]), same_as_previous])
        return ordered["id"].combine_chunks().filter(mask)

    def apply(self, table: pa.Table, duplicate_ids: pa.Array) -> StageResult:
        """Return the table without the rows whose id is in `duplicate_ids`."""
        if len(duplicate_ids) == 0:
            return StageResult(table)
        drop = pc.is_in(table["id"], value_set=duplicate_ids)
        return StageResult(table.filter(pc.invert(drop)))


class SplitStage:
    """Assigns train/validation/test by hashing a group key with the seed."""

    name = "split"

    def __init__(self, config: SplitConfig, seed: int):
        self.config = config
        self.seed = seed

    def group_key(self, record_id: str, character_name: str | None) -> str:
        """Return what is held out together: the conversation, or the whole character."""
        if self.config.by == "character" and character_name:
            return "character:" + character_name
        return "conversation:" + record_id

    def split_of(self, group_key: str) -> str:
        """Return the split of a group key: a fixed point in [0, 1) cut by the fractions."""
        payload = canonical_json(["split", self.seed, group_key]).encode("utf-8")
        u = int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") / 2**64
        if u < self.config.validation:
            return "validation"
        if u < self.config.validation + self.config.test:
            return "test"
        return "train"

    def apply(self, table: pa.Table) -> StageResult:
        ids = table["id"].to_pylist()
        names = pc.struct_field(table["character"], "name").to_pylist()
        splits = [self.split_of(self.group_key(i, n)) for i, n in zip(ids, names, strict=True)]
        column = table.schema.get_field_index("split")
        return StageResult(table.set_column(column, "split", pa.array(splits, pa.string())))


class AugmentStage:
    """Adds `copies` variants per train record; validation and test pass through untouched."""

    name = "augment"

    def __init__(self, augmenter: Any | None):
        # `augmenter` has .variants(record) -> (variants, stats); None when copies is 0.
        self.augmenter = augmenter

    def _checked_variants(
        self, record: dict[str, Any], variants: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        checked = []
        for variant in variants:
            variant = dict(variant)
            if variant.get("parent_id") != record["id"]:
                raise ValueError(f"variant {variant.get('id')} does not name its parent")
            # Inheriting the parent's split is what keeps evaluation data out of training.
            variant["split"] = record["split"]
            variant.setdefault("source_ref", record.get("source_ref"))
            for placeholder, key in ((IMAGE_PLACEHOLDER, "images"), (AUDIO_PLACEHOLDER, "audios")):
                found = count_placeholders(variant.get("messages") or [], placeholder)
                if found != len(variant.get(key) or []):
                    raise ValueError(
                        f"variant {variant.get('id')}: {found} {placeholder} but "
                        f"{len(variant.get(key) or [])} {key}"
                    )
            checked.append(variant)
        return checked

    def apply(self, table: pa.Table) -> StageResult:
        if self.augmenter is None:
            return StageResult(table)
        from augmenters import merge_stats

        is_train = pc.fill_null(pc.equal(table["split"], "train"), False).to_numpy(
            zero_copy_only=False
        )
        train_rows = np.nonzero(is_train)[0]
        keep = np.ones(table.num_rows, dtype=bool)
        variants: list[dict[str, Any]] = []
        rejected: list[QuarantineEntry] = []
        stats = empty_augment_stats()
        records = table.take(pa.array(train_rows, pa.int64())).to_pylist()
        # The augmenter may offer one scope for a batch of records (it saves and restores
        # global RNG states once instead of per record).
        batch_scope = getattr(self.augmenter, "batch", contextlib.nullcontext)
        with batch_scope():
            for row, record in zip(train_rows, records, strict=True):
                try:
                    produced, record_stats = self.augmenter.variants(record)
                    produced = self._checked_variants(record, produced)
                except Exception as exc:  # one record's failure never takes its batch down
                    keep[row] = False
                    message = f"{type(exc).__name__}: {exc}"
                    rejected.append(quarantine_entry(self.name, record, "augment_error", message))
                    continue
                variants.extend(produced)
                stats = merge_stats(stats, record_stats)
        originals = table.filter(pa.array(keep))
        if variants:
            produced_table = records_to_table(variants, table.schema)
            originals = pa.concat_tables([originals, produced_table])
        return StageResult(originals, rejected, stats)


# ---- Pass functions: run stages over part files, one bounded batch at a time. ----


def _side_rows(messages: list[dict[str, Any]]) -> pa.Table:
    stubs = [{"id": "", "source": "", "messages": [], "images": [], "audios": []} for _ in messages]
    table = records_to_table(stubs, WORK_SCHEMA)
    table = table.append_column(
        pa.field(DEDUP_KEY_COLUMN, pa.string()), pa.nulls(len(messages), pa.string())
    )
    return table.append_column(
        pa.field(SIDE_COLUMN, pa.string()),
        pa.array([json.dumps(m, ensure_ascii=False) for m in messages], pa.string()),
    )


def _pass_output(
    records: pa.Table,
    keys: list[str] | None,
    rejected: list[QuarantineEntry],
    stats: dict[str, Any] | None = None,
) -> pa.Table:
    records = records.select(WORK_SCHEMA.names)
    key_column = (
        pa.array(keys, pa.string()) if keys is not None else pa.nulls(len(records), pa.string())
    )
    records = records.append_column(pa.field(DEDUP_KEY_COLUMN, pa.string()), key_column)
    records = records.append_column(
        pa.field(SIDE_COLUMN, pa.string()), pa.nulls(len(records), pa.string())
    )
    side = [{"quarantine": entry.to_dict()} for entry in rejected]
    if stats is not None:
        side.append({"stats": stats})
    if side:
        records = pa.concat_tables([records.cast(PASS_SCHEMA), _side_rows(side)])
    return records.cast(PASS_SCHEMA)


def _part_batches(items: pa.Table, batch_size: int) -> Iterator[pa.Table]:
    """Yield batches of at most `batch_size` rows from (path, offset, length) slices."""
    for item in items.to_pylist():
        table = read_part(item["path"]).slice(item["offset"], item["length"])
        for offset in range(0, table.num_rows, batch_size):
            yield table.slice(offset, batch_size)


def validate_parts(items: pa.Table, limits: dict[str, Any], batch_size: int) -> Iterator[pa.Table]:
    """Yield, per batch of `batch_size` records of the listed part slices, the valid records
    with their dedup keys plus one side row per rejected record."""
    validate = ValidateStage(MediaLimits(**limits))
    dedup = DedupStage()
    for batch in _part_batches(items, batch_size):
        result = validate.apply(batch)
        yield _pass_output(result.table, dedup.keys(result.table), result.rejected)


def augment_parts(
    items: pa.Table,
    duplicate_ids: pa.Array,
    split: dict[str, Any],
    seed: int,
    augmenter: Any | None,
    batch_size: int,
) -> Iterator[pa.Table]:
    """Yield, per batch of the listed part slices, the deduplicated records with their split,
    their augmented variants, one side row per rejected record and one with the batch's stats."""
    dedup = DedupStage()
    splitter = SplitStage(SplitConfig(**split), seed)
    augment = AugmentStage(augmenter)
    for batch in _part_batches(items, batch_size):
        kept = dedup.apply(batch, duplicate_ids).table
        assigned = splitter.apply(kept).table
        result = augment.apply(assigned)
        yield _pass_output(result.table, None, result.rejected, result.stats)
