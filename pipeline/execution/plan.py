"""The driver's plans, made from small facts only (the ingest keys, the record pass's
rows), never from media bytes (docs/ARCHITECTURE.md, "The data flow").

- The record plan (`plan_records`): which ingested records are exact duplicates (the dedup
  stage over the ingest keys: the smallest id of each key stays), the near-duplicate plan
  over the signatures of those that stay (`plan_near_duplicates`, when the recipe's
  `quality.near_dup` is on), and the split plan over their groups, a near-duplicate
  cluster held out together (`near_dup_groups`).
- The record pass's work (`pass_slices`): slices of the ingested parts, one per task.
- The shard writer's input (`writer_index`): the pass's rows with part numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.execution.passes import Slice
from pipeline.record.ids import canonical_json
from pipeline.stages.dedup import key_runs
from pipeline.stages.quality.config import NearDupConfig
from pipeline.stages.quality.planner import NearDupPlan, clusters_of, plan_near_duplicates
from pipeline.stages.split import SplitStage
from pipeline.store.writer import INDEX_SCHEMA


def exact_duplicates(keys: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Return (the records of `keys` that stay, in their order; (id, representative,
    source, source_ref) of every exact duplicate, by id): the record with the smallest id
    of each dedup key represents it (the dedup stage's rule, `key_runs`), the rest are
    duplicates.

    One sort by (key, id) for both, in Arrow and numpy: the driver's cost per record is a
    few microseconds (at 100,000 records, ~0.1 s)."""
    n = keys.num_rows
    order, repeat, first = key_runs(keys.select(["id", "key"]))
    ordered = keys.select(["id", "source", "source_ref"]).take(order)
    at = np.flatnonzero(repeat)
    duplicates = pa.table(
        {
            "id": ordered["id"].take(at),
            "representative": ordered["id"].take(first[at]),
            "source": ordered["source"].take(at),
            "source_ref": ordered["source_ref"].take(at),
        }
    ).sort_by("id")
    dropped = np.zeros(n, bool)
    dropped[order.to_numpy()[at]] = True
    return keys.filter(pa.array(~dropped)), duplicates


@dataclass(frozen=True)
class RecordPlan:
    """What the driver decided before the record pass: every ingested record's keys, the
    duplicates (with their representative), what goes on (`todo`), and the planned split."""

    keys: pa.Table  # KEYS_SCHEMA, every ingested record
    duplicates: pa.Table  # id, representative, source, source_ref
    todo: pa.Table  # KEYS_SCHEMA, the records that are not duplicates
    split: SplitStage  # planned over the groups of `todo`
    near_dup: NearDupPlan | None = None  # None: near-duplicates are off

    @property
    def duplicate_ids(self) -> pa.Array:
        return self.duplicates["id"].combine_chunks()


def near_dup_groups(todo: pa.Table, plan: NearDupPlan) -> dict[str, str]:
    """Return group key -> the group it is held out with, so no near-copy crosses splits.

    Union-find over (record's group, its cluster): the groups a cluster touches become one.
    The name of a joined set is its smallest node: a whole character ("character:" sorts
    before "cluster:") absorbs the other characters and conversations its near-copies touch
    (so `split.by: character` still holds characters out whole, now together), and a set of
    conversations only is named by its cluster (`NearDupPlan.group_key`, "near_dup:<id>").
    Groups a cluster does not touch are left out (they stay their own).
    """
    if not plan.clusters:
        return {}
    groups = dict(zip(todo["id"].to_pylist(), todo["group"].to_pylist(), strict=True))
    links = [(groups[rid], "cluster:" + c) for rid, c in plan.clusters.items() if rid in groups]
    merged = {}
    for node, root in clusters_of(links).items():
        if node.startswith("cluster:") or node == root:
            continue
        merged[node] = (
            "near_dup:" + root.removeprefix("cluster:") if root.startswith("cluster:") else root
        )
    return merged


def plan_records(
    keys: pa.Table,
    splitter: SplitStage,
    signatures: pa.Table | None = None,
    near_dup: NearDupConfig | None = None,
) -> RecordPlan:
    """Return the record plan of a run's ingest keys (`splitter` unplanned); with
    `signatures` (the ingest tasks' SIGNATURE_SCHEMA rows) and `near_dup` on, the
    near-duplicate plan over the records that survive exact dedup, whose clusters (with
    `action: group`) join split groups."""
    todo, duplicates = exact_duplicates(keys)
    near = None
    if signatures is not None and near_dup is not None and near_dup.enabled:
        surviving = signatures.filter(pc.is_in(signatures["id"], value_set=todo["id"]))
        near = plan_near_duplicates(surviving, near_dup)
        if near_dup.action == "group":
            merged = near_dup_groups(todo, near)
            splitter = splitter.merging(merged)
            if merged:
                todo = regrouped(todo, merged, splitter)
    split = splitter.planned_at(todo["point"])
    return RecordPlan(keys, duplicates, todo, split, near)


def regrouped(todo: pa.Table, merged: dict[str, str], splitter: SplitStage) -> pa.Table:
    """Return `todo` with every group of `merged` replaced by the one it is held out with,
    and that group's point (only the merged groups are hashed, not every record's)."""
    into = sorted(set(merged.values()))
    sources = pa.array(list(merged), pa.string())
    targets = pa.array([merged[g] for g in sources.to_pylist()], pa.string())
    target_points = pa.array([splitter.point(g) for g in into], pa.uint64())
    at = pc.index_in(todo["group"], value_set=sources)
    group = pc.coalesce(pc.take(targets, at), todo["group"])
    point = pc.coalesce(
        pc.take(target_points, pc.index_in(group, value_set=pa.array(into, pa.string()))),
        todo["point"],
    )
    todo = todo.set_column(todo.schema.get_field_index("group"), "group", group)
    return todo.set_column(todo.schema.get_field_index("point"), "point", point)


def pass_slices(todo: pa.Table, per_task: int) -> list[tuple[Slice, str]]:
    """Return (slice, output name) pairs covering every record of `todo` with at most
    `per_task` of them per slice, each slice within one part (rows between them that are not
    in `todo` are skipped by the task). The name is the sha256 of the slice's cache keys
    (of its place when there are none): the same work always writes the same file."""
    out: list[tuple[Slice, str]] = []
    if todo.num_rows == 0:
        return out
    # Only the columns a slice needs are reordered (the keys' other strings cost the driver
    # ~0.5 s to take at 100,000 records).
    needed = [c for c in ("part", "row", "ckey") if c in todo.column_names]
    ordered = todo.select(needed).sort_by([("part", "ascending"), ("row", "ascending")])
    part_of = pc.dictionary_encode(ordered["part"]).combine_chunks()
    codes = part_of.indices.to_numpy(zero_copy_only=False)
    rows = ordered["row"].to_numpy()
    # A slice starts where a part starts, and every `per_task` records within a part.
    n = len(rows)
    part_starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    run_start = np.repeat(part_starts, np.diff(np.r_[part_starts, n]))
    starts = np.flatnonzero((np.arange(n) - run_start) % per_task == 0)
    stops = np.r_[starts[1:], n]
    parts = part_of.dictionary.to_pylist()
    keys = ordered["ckey"].to_pylist() if "ckey" in todo.column_names else None
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        first = int(rows[start])
        piece = Slice(parts[codes[start]], first, int(rows[stop - 1]) + 1 - first)
        what = keys[start:stop] if keys is not None else [piece.part, piece.offset]
        out.append((piece, hashlib.sha256(canonical_json(what).encode()).hexdigest()))
    return out


def writer_index(rows: pa.Table) -> tuple[pa.Table, list[str]]:
    """Return ROWS_SCHEMA rows as the writer's INDEX_SCHEMA rows (part numbers) and the part
    paths those numbers index, ordered by the smallest record id each part holds: the
    writer takes rows in part-number order (`plan_shards`), so neither the order tasks
    finished in nor the parts' names reach the shards.

    A part is named by the sha256 of its slice's cache keys, which include the code
    version: ordered by path, a shard's rows were reordered by every change of the code
    (the demo's v1 train shard, same rows and content id: 2,329,142 bytes at one commit,
    2,329,138 at the next). Record ids do not move with the code."""
    parts = pa.table({"part": rows["part"], "id": rows["id"]})
    first = parts.group_by("part", use_threads=False).aggregate([("id", "min")])
    order = pc.sort_indices(first, sort_keys=[("id_min", "ascending"), ("part", "ascending")])
    paths = first["part"].take(order).combine_chunks()
    index = pa.table(
        {
            "split": rows["split"],
            "id": rows["id"],
            "part": pc.index_in(rows["part"], value_set=paths).cast(pa.int32()),
            "row": rows["row"],
            "nbytes": rows["nbytes"],
        },
        schema=INDEX_SCHEMA,
    )
    return index, paths.to_pylist()
