"""What changed between two versions: records added, removed and changed by id, and
per-split counts and statistics."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record.schema import SPLITS
from pipeline.store.manifest import Manifest
from pipeline.store.row_digest import row_digests
from pipeline.store.shards import read_shard_batches

STAT_NAMES = ("rows", "originals", "variants", "turns", "images", "audios", "media_bytes")


def _media_bytes(column: pa.ChunkedArray) -> int:
    flat = pc.list_flatten(column)
    if len(flat) == 0:
        return 0
    return int(pc.sum(pc.binary_length(pc.struct_field(flat, "bytes"))).as_py() or 0)


@dataclass
class VersionContent:
    """Every record's id and digest of one version, and per-split statistics."""

    digests: dict[str, str] = field(default_factory=dict)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def read(
        cls,
        manifest: Manifest,
        version_dir: str,
        fs: Any = None,
        skip: frozenset[str] = frozenset(),
    ) -> VersionContent:
        """Return the content of a version by streaming its shards one batch at a time
        (from store filesystem `fs`, local when None), but the shards whose sha256 is in
        `skip`."""
        content = cls(stats={s: dict.fromkeys(STAT_NAMES, 0) for s in SPLITS})
        for shard in manifest.shards:
            if shard.sha256 in skip:
                continue
            path = os.path.join(version_dir, shard.path)
            for batch in read_shard_batches(path, fs=fs):
                table = pa.Table.from_batches([batch])
                content._add(table)
        return content

    def _add(self, table: pa.Table) -> None:
        # What the quality stages annotate is not content: a re-lint would otherwise
        # mark every row changed.
        content = table.select([i for i, f in enumerate(table.schema) if f.name != "quality"])
        for record_id, digest in zip(table["id"].to_pylist(), row_digests(content), strict=True):
            self.digests[record_id] = digest
        for split in set(table["split"].to_pylist()):
            part = table.filter(pc.equal(table["split"], split))
            stats = self.stats.setdefault(split, dict.fromkeys(STAT_NAMES, 0))
            variants = int(pc.sum(pc.is_valid(part["parent_id"])).as_py() or 0)
            stats["rows"] += part.num_rows
            stats["variants"] += variants
            stats["originals"] += part.num_rows - variants
            stats["turns"] += int(np.sum(pc.list_value_length(part["messages"])))
            stats["images"] += int(np.sum(pc.list_value_length(part["images"])))
            stats["audios"] += int(np.sum(pc.list_value_length(part["audios"])))
            stats["media_bytes"] += _media_bytes(part["images"]) + _media_bytes(part["audios"])


@dataclass
class VersionDiff:
    """Records added, removed and changed by id between two versions, and stat deltas."""

    name: str
    before: int
    after: int
    added: list[str]
    removed: list[str]
    changed: list[str]
    stats_before: dict[str, dict[str, int]]
    stats_after: dict[str, dict[str, int]]

    def split_deltas(self) -> dict[str, dict[str, dict[str, int]]]:
        """Return per split, per statistic: before, after and delta."""
        deltas = {}
        for split in SPLITS:
            a = self.stats_before.get(split, {})
            b = self.stats_after.get(split, {})
            deltas[split] = {
                stat: {
                    "before": a.get(stat, 0),
                    "after": b.get(stat, 0),
                    "delta": b.get(stat, 0) - a.get(stat, 0),
                }
                for stat in STAT_NAMES
            }
        return deltas

    def summary(self) -> dict[str, Any]:
        """Return the short form the data card shows: counts and rows per split."""
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "splits": {
                split: {"before": d["rows"]["before"], "after": d["rows"]["after"]}
                for split, d in self.split_deltas().items()
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "from": self.before,
            "to": self.after,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "splits": self.split_deltas(),
        }


def diff_contents(
    name: str, before: int, a: VersionContent, after: int, b: VersionContent
) -> VersionDiff:
    """Return the differences between two read versions."""
    ids_a, ids_b = set(a.digests), set(b.digests)
    changed = sorted(i for i in ids_a & ids_b if a.digests[i] != b.digests[i])
    return VersionDiff(
        name=name,
        before=before,
        after=after,
        added=sorted(ids_b - ids_a),
        removed=sorted(ids_a - ids_b),
        changed=changed,
        stats_before=a.stats,
        stats_after=b.stats,
    )


def diff_versions(store: Any, before: int, after: int) -> VersionDiff:
    """Return the differences between two committed versions of `store` (a Store)."""
    ma, mb = store.manifest(before), store.manifest(after)
    a = VersionContent.read(ma, store.version_dir(before), store.fs)
    b = VersionContent.read(mb, store.version_dir(after), store.fs)
    return diff_contents(store.name, before, a, after, b)


def summarize_against_parent(
    parent: Manifest, parent_dir: str, manifest: Manifest, version_dir: str, fs: Any = None
) -> dict[str, Any]:
    """Return the card's diff summary of a version (not yet committed) against its parent,
    both folders on store filesystem `fs` (local when None).

    A shard both versions hold (the same bytes: one the new version reused) adds, removes
    and changes no record, and ids are unique within a version, so only the other shards
    are read; the rows per split come from the manifests."""
    shared = frozenset(s.sha256 for s in parent.shards) & {s.sha256 for s in manifest.shards}
    a = VersionContent.read(parent, parent_dir, fs, skip=shared)
    b = VersionContent.read(manifest, version_dir, fs, skip=shared)
    summary = diff_contents(manifest.name, parent.number, a, manifest.number, b).summary()
    summary["splits"] = {
        split: {"before": parent.splits.get(split, 0), "after": manifest.splits.get(split, 0)}
        for split in SPLITS
    }
    return summary
