"""Shards a new version takes whole from its parent: those whose every row is unchanged.

A parent's shard is reused when each of its rows (id and row digest, from its sidecar) is a
row of the new version with the same digest, known before anything is written for the rows
the record cache held (`passes.ROWS_SCHEMA`'s `row_sha256`). Its file and sidecar get a
second name in the staged version: a hard link on local disk (a published shard is never
written into, so two versions may share one file), a server-side copy on an object store.
Only the other rows are written, into new shards. The content id is over rows, not files,
so it equals a run's from scratch (docs/ARCHITECTURE.md, "Store layout"); `verify` checks a
reused shard's file and rows like any other.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from pipeline.record.schema import SPLITS
from pipeline.store.manifest import MANIFEST_FORMAT, Manifest, ShardEntry
from pipeline.store.row_digest import (
    RowDigestsMismatch,
    read_checked_row_digests,
    row_digests_path,
)
from pipeline.store.shards import shard_format, shard_name
from pipeline.store.writer import ShardPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReusableShard:
    """A parent's shard whose rows are all rows of the new version, unchanged."""

    entry: ShardEntry  # as the parent's manifest lists it
    rows: pa.Table  # its sidecar's (id, row_sha256), in shard order


def reusable_shards(
    parent: Manifest | None,
    parent_dir: str,
    known: pa.Table,
    fmt: str,
    schema_sha256: str,
    fs: Any,
) -> list[ReusableShard]:
    """Return the shards of `parent` (its folder `parent_dir`) in format `fmt` whose every
    row is in `known` (id, row_sha256: the new version's rows whose digest is known) with
    the same digest, in the parent's order. A parent of another manifest format or record
    schema, or a shard whose sidecar or size does not match its entry, gives none."""
    if parent is None or parent.format != MANIFEST_FORMAT or parent.schema_sha256 != schema_sha256:
        return []
    valid = known.filter(known["row_sha256"].is_valid())
    digests = dict(zip(valid["id"].to_pylist(), valid["row_sha256"].to_pylist(), strict=True))
    if not digests:
        return []
    out = []
    for shard in parent.shards:
        if shard_format(shard.path) != fmt or shard.row_digests is None:
            continue
        sidecar = os.path.join(parent_dir, shard.row_digests)
        try:
            # What is taken on trust is checked as cheaply as it can be: the sidecar by its
            # sha256 (a small file), the shard by its size (its sha256 is `verify`'s job).
            if fs.size(os.path.join(parent_dir, shard.path)) != shard.bytes:
                continue
            rows = read_checked_row_digests(sidecar, shard.row_digests_sha256, fs)
        except (OSError, pa.ArrowException, RowDigestsMismatch) as exc:
            log.info("parent shard %s is not reused: %s", shard.path, exc)
            continue
        ids, shas = rows["id"].to_pylist(), rows["row_sha256"].to_pylist()
        if len(ids) == shard.rows and all(
            digests.get(i) == d for i, d in zip(ids, shas, strict=True)
        ):
            out.append(ReusableShard(shard, rows))
    return out


def link_shard(
    shard: ReusableShard, name: str, parent_dir: str, folder: str, fs: Any
) -> ShardEntry:
    """Give a reusable shard and its sidecar their names in the staged version `folder`
    (shard file `name`); return its manifest entry there."""
    sidecar = row_digests_path(name)
    assert shard.entry.row_digests is not None  # reusable_shards takes no shard without
    fs.link_file(os.path.join(parent_dir, shard.entry.path), os.path.join(folder, name))
    fs.link_file(os.path.join(parent_dir, shard.entry.row_digests), os.path.join(folder, sidecar))
    return shard.entry.model_copy(update={"path": name, "row_digests": sidecar})


def numbered(
    reused: list[ReusableShard], plans: list[ShardPlan], fmt: str
) -> tuple[list[str], list[ShardPlan]]:
    """Return the names of the reused shards and the plans of the new ones renamed: per
    split, the reused shards first (in the parent's order), then the new, numbered over
    both (`<split>-<i>-of-<n>`)."""
    names = [""] * len(reused)
    renamed = list(plans)
    for split in SPLITS:
        mine = [i for i, r in enumerate(reused) if r.entry.split == split]
        new = [i for i, p in enumerate(plans) if p.split == split]
        count = len(mine) + len(new)
        for k, i in enumerate(mine):
            names[i] = shard_name(split, k, count, fmt)
        for k, i in enumerate(new, start=len(mine)):
            renamed[i] = replace(plans[i], name=shard_name(split, k, count, fmt))
    return names, renamed
