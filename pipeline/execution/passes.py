"""The record stages: validate, dedup, split, augment. Each transforms an Arrow table of
WORK records and knows nothing about Ray; `pipeline.run` decides where they execute.

A record that a stage rejects leaves as a QuarantineEntry with a reason (RecordRejected's,
or `stage_error` for anything unexpected); its neighbours carry on. An augmenter that fails
on a record costs only that record's variants (counted as `failed_variants`), never the record.

The two pass functions at the bottom run stages over part files and return one table per
bounded batch. Anything that is not a record travels back in the `_side` column of a stub
row (a quarantine entry or augmentation stats), so one Ray dataset carries both and nothing
is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from augmenters.stats import AugmentStats
from pipeline.recipe import MediaLimits
from pipeline.record.rejection import QuarantineEntry
from pipeline.record.schema import (
    WORK_SCHEMA,
    records_to_table,
)
from pipeline.stages.augment import AugmentStage
from pipeline.stages.dedup import DedupStage
from pipeline.stages.split import SplitStage
from pipeline.stages.validate import ValidateStage
from pipeline.store.staging import read_part

DEDUP_KEY_COLUMN = "_dedup_key"
SIDE_COLUMN = "_side"
# What a pass returns: WORK records plus the dedup key (pass one) and side messages.
PASS_SCHEMA = WORK_SCHEMA.append(pa.field(DEDUP_KEY_COLUMN, pa.string())).append(
    pa.field(SIDE_COLUMN, pa.string())
)


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
    stats: AugmentStats | None = None,
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
        side.append({"stats": stats.to_dict()})
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
    splitter: SplitStage,
    augmenter: Any | None,
    batch_size: int,
) -> Iterator[pa.Table]:
    """Yield, per batch of the listed part slices, the deduplicated records with their split
    (`splitter` carries the run's cut points), their augmented variants, one side row per
    rejected record and one with the batch's stats."""
    dedup = DedupStage()
    augment = AugmentStage(augmenter)
    for batch in _part_batches(items, batch_size):
        kept = dedup.apply(batch, duplicate_ids).table
        assigned = splitter.apply(kept).table
        result = augment.apply(assigned)
        yield _pass_output(result.table, None, result.rejected, result.stats)
