"""Exact-duplicate detection: one key per record from its normalized turns and media bytes.

The keys are computed where the bytes are, in the ingest tasks (`keys`); the stage itself
runs in the driver's plan over those keys alone (docs/ARCHITECTURE.md, "The data flow"):
of each key the smallest id stays.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record.ids import canonical_json, media_digests
from pipeline.stages.base import BatchContext, StageOutput


class DedupStage:
    """Computes exact-duplicate keys: same normalized messages and same media bytes."""

    name = "dedup"

    def keys(
        self, table: pa.Table, digests: tuple[list[list[str]], list[list[str]]] | None = None
    ) -> list[str]:
        """Return one key per row; rows with equal keys are exact duplicates. `digests`:
        the (images, audios) `media_digests` of `table`, when the caller has them already."""
        images, audios = digests or (
            media_digests(table["images"]),
            media_digests(table["audios"]),
        )
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
        order, repeat, _ = key_runs(index)
        return index["id"].take(order).combine_chunks().filter(pa.array(repeat))

    def process(self, batch: pa.Table, ctx: BatchContext) -> StageOutput:
        """Return `batch` without its exact duplicates (all but the smallest id per key),
        counted as "duplicates". The `key` column is used when `batch` has one (the
        ingest tasks' key facts), else the keys are computed from the records."""
        if "key" in batch.column_names:
            index = batch.select(["id", "key"])
        else:
            index = pa.table({"id": batch["id"], "key": pa.array(self.keys(batch), pa.string())})
        duplicates = self.duplicate_ids(index)
        out = StageOutput(batch)
        if len(duplicates):
            out.table = batch.filter(pc.invert(pc.is_in(batch["id"], value_set=duplicates)))
            out.stats["duplicates"] = len(duplicates)
        return out


def key_runs(index: pa.Table) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Return how the rows of an (id, key) table fall into runs of equal keys, the dedup
    rule's one sort: `order`, the indices that sort it by (key, id); per sorted row,
    `repeat` (its key equals the previous row's: a duplicate of a smaller id) and `first`
    (the sorted position of its key's first row, the record that represents it)."""
    n = index.num_rows
    order = pc.sort_indices(index, sort_keys=[("key", "ascending"), ("id", "ascending")])
    repeat = np.zeros(n, bool)
    if n > 1:
        keys = index["key"].take(order).combine_chunks()
        same = pc.equal(keys.slice(1), keys.slice(0, n - 1))
        repeat[1:] = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    first = np.maximum.accumulate(np.where(repeat, 0, np.arange(n)))
    return order, repeat, first
