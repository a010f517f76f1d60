"""The record pass through the per-record cache: which records the cache already holds
(the lookup is `RecordCache.lookup`), their rows as they lie or rebased under this recipe
by tasks, and what this run adds to the cache's index (docs/ARCHITECTURE.md, "Store
layout": cache/).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import pyarrow as pa
import pyarrow.compute as pc

from augmenters.stats import AugmentStats
from pipeline.execution.cache_keys import CacheKeys
from pipeline.execution.cluster import StageResources, TaskRunner
from pipeline.execution.ledger import RunLedger
from pipeline.execution.media_pairs import flags_digests
from pipeline.execution.passes import ROWS_SCHEMA, RebaseTask, rebase_rows
from pipeline.execution.provenance import code_version
from pipeline.recipe import Recipe
from pipeline.record.ids import canonical_json
from pipeline.record.rejection import QuarantineEntry
from pipeline.stages.split import SplitStage
from pipeline.store.cache import RecordCache

log = logging.getLogger(__name__)


class CachedRecords:
    """One run's use of the record cache: keys, hits, rebased hits, and what it adds."""

    def __init__(
        self,
        recipe: Recipe,
        cache: RecordCache,
        run_id: str,
        ledger: RunLedger,
        tasks: TaskRunner,
    ):
        self.recipe = recipe
        self.tasks = tasks
        self.cache = cache
        self.fs = cache.fs
        self.run_id = run_id
        self.ledger = ledger

    def keyed(
        self, todo: pa.Table, split: SplitStage, quality: list[str | None] | None = None
    ) -> pa.Table:
        """Return `todo` with each record's cache key (`ckey`) and assigned split; `quality`
        holds per record the quality part of its key (`quality_key_part`; None: off)."""
        splits = split.splits_at(todo["point"]).to_pylist()
        keyer = CacheKeys(self.recipe, code_version().identity())
        ckeys = [
            keyer.key(c, s, i, a, q)
            for c, s, i, a, q in zip(
                todo["content"].to_pylist(),
                splits,
                todo["images"].to_pylist(),
                todo["audios"].to_pylist(),
                quality or [None] * todo.num_rows,
                strict=True,
            )
        ]
        todo = todo.append_column("split", pa.array(splits, pa.string()))
        return todo.append_column("ckey", pa.array(ckeys, pa.string()))

    def reused(
        self, hits: pa.Table, stale: pa.Table
    ) -> tuple[pa.Table, pa.Table, list[QuarantineEntry]]:
        """Return the ROWS_SCHEMA rows of cache hits as they lie, those of hits made under
        another recipe once rebased by tasks (no record is augmented again), and the hits'
        quarantine entries; the cached stats of their augmented originals are counted."""
        entries = []
        for table in (hits, stale):
            rejected = table.filter(pc.is_valid(table["rejection"]))
            entries.extend(
                QuarantineEntry(**json.loads(text)) for text in rejected["rejection"].to_pylist()
            )
        kept = self._as_rows(hits.filter(pc.is_null(hits["rejection"])))
        stale = stale.filter(pc.is_null(stale["rejection"]))
        rebased = self._rebased(stale) if stale.num_rows else ROWS_SCHEMA.empty_table()
        for table in (kept, rebased):
            for text in table["stats"].drop_null().to_pylist():
                self.ledger.stats.merge(AugmentStats.from_dict(json.loads(text)))
        return kept, rebased, entries

    def _as_rows(self, cached: pa.Table) -> pa.Table:
        if cached.num_rows == 0:
            return ROWS_SCHEMA.empty_table()
        parts = [self.cache.part_path(p) for p in cached["part"].to_pylist()]
        return pa.table(
            {
                "split": cached["split"],
                "id": cached["id"],
                "parent_id": cached["parent_id"],
                "part": pa.array(parts, pa.string()),
                "row": cached["row"],
                "nbytes": cached["nbytes"],
                "stats": cached["stats"],
                "row_sha256": cached["row_sha256"],
            },
            schema=ROWS_SCHEMA,
        )

    def _rebased(self, stale: pa.Table) -> pa.Table:
        """Copy cached rows made under another recipe into new cache parts with this recipe's
        variant ids; one task per cached part."""
        resources = StageResources.for_stage(self.recipe.execution, "augment", "validate")
        calls = []
        for part in sorted(stale["part"].unique().to_pylist()):
            of_part = stale.filter(pc.equal(stale["part"], part)).sort_by("row")
            keys = sorted(set(of_part["key"].to_pylist()))
            name = hashlib.sha256(
                canonical_json([self.recipe.recipe_hash, keys]).encode()
            ).hexdigest()
            task = RebaseTask(
                part=self.cache.part_path(part),
                rows=of_part["row"].to_pylist(),
                stats=of_part["stats"].to_pylist(),
                recipe_hash=self.recipe.recipe_hash,
                output=self.cache.part_path(f"{name}.arrow"),
            )
            calls.append((task, self.fs))
        out = []
        self.tasks.choose(stale.num_rows)
        for _, outcome in self.tasks.run(rebase_rows, calls, resources):
            self.ledger.ran_on("rebase", outcome.node)
            out.append(outcome.rows)
        return pa.concat_tables(out) if out else ROWS_SCHEMA.empty_table()

    def unflagged(
        self, rows: pa.Table, hits: pa.Table, flags: dict[str, list[tuple[str, str]]]
    ) -> pa.Table:
        """Return the ROWS_SCHEMA `rows` of cache hits with `row_sha256` null where the
        media flags the writer adds to the row now (`flags`, by row id) are not those it was
        written with (the hit's `media_flags`): the row is written again, not reused."""
        if rows.num_rows == 0:
            return rows
        written = dict(zip(hits["id"].to_pylist(), hits["media_flags"].to_pylist(), strict=True))
        ids = rows["id"].to_pylist()
        now = flags_digests(flags, ids)
        same = [written.get(i) == d for i, d in zip(ids, now, strict=True)]
        digests = pc.if_else(pa.array(same), rows["row_sha256"], pa.nulls(len(ids), pa.string()))
        return rows.set_column(rows.schema.get_field_index("row_sha256"), "row_sha256", digests)

    def remember(
        self,
        todo: pa.Table,
        rows: pa.Table,
        entries: list[QuarantineEntry],
        media: tuple[dict[str, str], dict[str, str]] | None = None,
    ) -> None:
        """Add what this run computed (or rebased) to the cache index; `media`: per record
        its media signature rows and per row the digest of its writer-added media flags
        (`CACHE_INDEX_SCHEMA`'s `media`, `media_flags`), when the record pass signs media."""
        owner = pc.coalesce(rows["parent_id"], rows["id"])
        keyed = rows.append_column("owner", owner).join(
            todo.select(["id", "ckey"]).rename_columns(["owner", "key"]), "owner"
        )
        if media is not None:
            keyed = _with_media(keyed, *media)
        names = [os.path.basename(p) for p in keyed["part"].to_pylist()]
        stamp = (self.run_id, self.recipe.recipe_hash)
        made = self.cache.index_rows(
            keyed.drop_columns(["part"]).append_column("part", pa.array(names, pa.string())),
            *stamp,
        )
        ids = pa.array([e.record_id for e in entries], pa.string())
        texts = pa.array([json.dumps(e.to_dict()) for e in entries], pa.string())
        # Inner join: an entry of a record that is not in `todo` has no key to keep it under.
        rejected = (
            pa.table({"id": ids, "rejection": texts})
            .join(todo.select(["id", "ckey", "split"]), "id")
            .rename_columns({"ckey": "key"})
        )
        if media is not None:
            rejected = _with_media(rejected, media[0], {})
        rows = pa.concat_tables([made, self.cache.index_rows(rejected, *stamp)])
        try:
            self.cache.add(self.run_id, rows)
        except OSError as exc:
            # A cache that cannot be written costs the next run a recomputation, not this run.
            log.warning("cache: could not write the index of run %s: %s", self.run_id, exc)


def _with_media(rows: pa.Table, media: dict[str, str], flags: dict[str, str]) -> pa.Table:
    """Return index-bound `rows` (id, parent_id when known) with `media` on originals and
    rejected records (null on variants) and `media_flags` by row id."""
    ids = rows["id"].to_pylist()
    parents = (
        rows["parent_id"].to_pylist() if "parent_id" in rows.column_names else [None] * len(ids)
    )
    kept = [media.get(i, "[]") if p is None else None for i, p in zip(ids, parents, strict=True)]
    rows = rows.append_column("media", pa.array(kept, pa.string()))
    return rows.append_column("media_flags", pa.array([flags.get(i) for i in ids], pa.string()))
