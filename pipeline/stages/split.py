"""Train / validation / test assignment: groups ranked by a seeded hash, cut by count.

Each group (a conversation, or a whole character) gets a fixed point on a 64-bit line from
sha256(seed, group key). The groups of a run are ranked by that point and cut by count:
the lowest `round(n * validation)` go to validation, the next `round(n * test)` to test,
the rest to train; with at least one group per requested split, each requested split gets
one. Plain thresholds on the hash would leave a split empty about half the time
for corpora of 8-12 records; cutting by count makes the fractions real.

Stability: the plan is a pair of cut points on the line, so a group's split depends only on
its point and the cuts. Adding a group inserts one point and moves each cut by at most one
rank, so at most one existing group crosses each cut; nothing else moves. Duplicates never
count: the plan is made over the records that survive dedup.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.recipe import SplitConfig
from pipeline.record.ids import canonical_json
from pipeline.stages.base import BatchContext, StageOutput

_LINE_END = 2**64  # points lie in [0, 2**64)


def split_counts(groups: int, validation: float, test: float) -> tuple[int, int]:
    """Return how many of `groups` go to (validation, test): the rounded fractions, at least
    one for each requested split when there are groups enough for every requested split,
    and never all of them (train keeps one)."""
    n_val = math.floor(groups * validation + 0.5)
    n_test = math.floor(groups * test + 0.5)
    requested = 1 + (validation > 0) + (test > 0)
    if groups >= requested:
        n_val = max(n_val, 1 if validation > 0 else 0)
        n_test = max(n_test, 1 if test > 0 else 0)
    while groups and n_val + n_test >= groups:
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


@dataclass(frozen=True)
class SplitPlan:
    """The two cut points on the hash line and how many groups each split got."""

    validation_below: int
    test_below: int
    groups: dict[str, int]

    def split_of_point(self, point: int) -> str:
        if point < self.validation_below:
            return "validation"
        if point < self.test_below:
            return "test"
        return "train"

    def splits_of_points(self, points: np.ndarray) -> np.ndarray:
        """Return `split_of_point` of every point of a uint64 array, vectorised."""

        def below(cut: int) -> np.ndarray:
            # A cut at the line's end (past every uint64) holds every point.
            return np.ones(len(points), bool) if cut >= _LINE_END else points < np.uint64(cut)

        names = np.array(["train", "test", "validation"], object)
        return names[below(self.test_below).astype(np.int8) + below(self.validation_below)]


class SplitStage:
    """Assigns train/validation/test to records by their group's rank under a seeded hash."""

    name = "split"

    def __init__(
        self,
        config: SplitConfig,
        seed: int,
        plan: SplitPlan | None = None,
        merged: dict[str, str] | None = None,
    ):
        self.config = config
        self.seed = seed
        self.plan = plan  # None until `planned` has seen the run's groups
        # Group key -> the group it is held out with (near-duplicate clusters join groups:
        # `pipeline.execution.plan.near_dup_groups`); a key not in it is its own group.
        self.merged = merged or {}
        # Points `planned` computed, so the driver's `split_of` per record hashes nothing
        # again; left out when the stage is pickled for the tasks (they see few groups).
        self._points: dict[str, int] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_points": {}}

    def group_key(self, record_id: str, character_name: str | None) -> str:
        """Return what is held out together: the conversation, or the whole character."""
        if self.config.by == "character" and character_name:
            key = "character:" + character_name
        else:
            key = "conversation:" + record_id
        return self.merged.get(key, key)

    def merging(self, merged: dict[str, str]) -> SplitStage:
        """Return this stage, unplanned, holding out each group of `merged` with the one it
        maps to."""
        return SplitStage(self.config, self.seed, merged=merged)

    def point(self, group_key: str) -> int:
        """Return the group's fixed point in [0, 2**64), from the seed and the key only."""
        known = self._points.get(group_key)
        if known is not None:
            return known
        payload = canonical_json(["split", self.seed, group_key]).encode("utf-8")
        return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big")

    def group_keys(self, table: pa.Table) -> list[str]:
        """Return the group key of every record of `table` (columns id and character)."""
        ids = table["id"].to_pylist()
        names = pc.struct_field(table["character"], "name").to_pylist()
        return [self.group_key(i, n) for i, n in zip(ids, names, strict=True)]

    def points(self, group_keys: list[str]) -> pa.Array:
        """Return the point of every group key (uint64), in order."""
        return pa.array([self.point(k) for k in group_keys], pa.uint64())

    def planned(self, group_keys: Iterable[str]) -> SplitStage:
        """Return this stage with the cut points for exactly these groups (repeats count once)."""
        known = {k: self.point(k) for k in group_keys}
        stage = self.planned_at(pa.array(list(known.values()), pa.uint64()))
        stage._points = known
        return stage

    def planned_at(self, points: pa.Array | pa.ChunkedArray) -> SplitStage:
        """Return this stage with the cut points for the groups at exactly these `points`
        (uint64, one per record: repeats count once), e.g. the ingest keys' `point` column,
        which the ingest tasks hashed: the driver hashes no group again."""
        line = np.unique(np.asarray(points.to_numpy(zero_copy_only=False), np.uint64))
        n_val, n_test = split_counts(len(line), self.config.validation, self.config.test)

        def cut(rank: int) -> int:
            return int(line[rank]) if rank < len(line) else _LINE_END

        plan = SplitPlan(
            validation_below=cut(n_val) if len(line) else 0,
            test_below=cut(n_val + n_test) if len(line) else 0,
            groups={
                "train": len(line) - n_val - n_test,
                "validation": n_val,
                "test": n_test,
            },
        )
        return SplitStage(self.config, self.seed, plan, self.merged)

    def splits_at(self, points: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Return the split of every group point (uint64) under this stage's plan."""
        if self.plan is None:
            raise RuntimeError("the split has no plan: call planned(group_keys) first")
        at = np.asarray(points.to_numpy(zero_copy_only=False), np.uint64)
        return pa.array(self.plan.splits_of_points(at), pa.string())

    def split_of(self, group_key: str) -> str:
        """Return the split of a group key under this stage's plan."""
        if self.plan is None:
            raise RuntimeError("the split has no plan: call planned(group_keys) first")
        return self.plan.split_of_point(self.point(group_key))

    def process(self, batch: pa.Table, ctx: BatchContext) -> StageOutput:
        """Return `batch` with every record's `split` set by this stage's plan."""
        splits = [self.split_of(k) for k in self.group_keys(batch)]
        for record_id, split in zip(batch["id"].to_pylist(), splits, strict=True):
            if record_id in ctx.records:
                ctx.records[record_id]["split"] = split
        column = batch.schema.get_field_index("split")
        return StageOutput(batch.set_column(column, "split", pa.array(splits, pa.string())))
