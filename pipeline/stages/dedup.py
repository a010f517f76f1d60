"""Exact-duplicate detection: one key per record from its normalized turns and media bytes."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record.ids import canonical_json, media_digests
from pipeline.stages.base import StageResult


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
