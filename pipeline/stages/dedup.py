"""Exact-duplicate detection: one key per record from its normalized turns and media bytes.

The keys are computed where the bytes are, in the ingest tasks (`keys`); the stage itself
runs in the driver's plan over those keys alone (docs/ARCHITECTURE.md, "The data flow"):
of each key the smallest id stays.
"""

from __future__ import annotations

import hashlib

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
