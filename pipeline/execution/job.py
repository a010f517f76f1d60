"""`roleforge run`: the data job of one recipe, from sources to a committed version.

How records move (DESIGN.md: workers write, the driver commits small facts):
- Ingest: one Ray task per source reads it (JSON and media bytes), appends the records to
  Arrow IPC part files in `_staging/<run_id>/ingest/`, and returns per record only its id,
  its exact-duplicate key (from the bytes: nothing is decoded), its split group, its
  content hash and where it lies.
- The driver decides on those keys alone: which ids are duplicates (the smallest id per key
  stays), and the split plan over the groups that stay (cut points by count).
- The record pass: tasks over slices of the ingested parts validate -> split -> augment each
  record with one decode (the pixels that prove an image decodes are the ones augmented),
  write their own output part, and return per output row (split, id, part, row, bytes),
  plus their quarantine entries and stats.
- Shards: the driver plans them from those rows (id order per split, cut by size); one task
  per shard gathers its rows from the parts and writes it, hashing on the way out.
- The driver builds the typed manifest and commits (exclusive create).
The driver never touches a media byte; its work per record is a few Arrow compute kernels
over the small facts (no Python loop per record).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from augmenters.stats import AugmentStats
from pipeline.execution.cache_keys import CacheKeys
from pipeline.execution.cluster import (
    StageResources,
    cluster_cpus,
    ensure_ray,
    run_tasks,
    slice_rows,
)
from pipeline.execution.passes import (
    KEYS_SCHEMA,
    ROWS_SCHEMA,
    IngestOutcome,
    PassContext,
    Slice,
    ingest_source,
    rebase_rows,
    record_pass,
    write_shard,
)
from pipeline.execution.provenance import (
    augmentation_summary,
    code_version,
    pinned_inputs,
    unchanged_inputs,
)
from pipeline.recipe import Recipe, check_recipe_ops, parse_size
from pipeline.record.ids import canonical_json, new_run_id
from pipeline.record.rejection import (
    QuarantineEntry,
    TooManyBadRecords,
    check_bad_fraction,
    check_something_to_publish,
)
from pipeline.record.schema import RECORD_SCHEMA, SPLITS
from pipeline.stages.dedup import DedupStage
from pipeline.stages.split import SplitStage
from pipeline.store.cache import CACHE_INDEX_SCHEMA, RecordCache
from pipeline.store.commit import (
    STAGES,
    CommitCheckFailed,
    VersionCommitter,
    card_metadata,
    check_counts,
    content_id,
    schema_sha256,
)
from pipeline.store.fs import LocalFS, store_fs
from pipeline.store.lock import RunLease
from pipeline.store.manifest import (
    DedupSummary,
    InputFile,
    Manifest,
    QuarantineSummary,
    ReuseSummary,
    ShardEntry,
    StageCount,
)
from pipeline.store.quarantine import QuarantineWriter
from pipeline.store.read import Store, VersionNotFound
from pipeline.store.writer import INDEX_SCHEMA, ShardWriter, localized, plan_shards

log = logging.getLogger(__name__)


# Ingest tasks per CPU for a source of many files (each reads a group of them).
INGEST_TASKS_PER_CPU = 2


def duplicates_of(keys: pa.Table) -> pa.Table:
    """Return (id, representative, source, source_ref) of every exact duplicate in `keys`:
    the record with the smallest id of each dedup key represents it, the rest are duplicates."""
    duplicate_ids = DedupStage.duplicate_ids(keys.select(["id", "key"]))
    if len(duplicate_ids) == 0:
        empty = pa.array([], pa.string())
        return pa.table({c: empty for c in ("id", "representative", "source", "source_ref")})
    ordered = keys.sort_by([("key", "ascending"), ("id", "ascending")])
    first = ordered.group_by("key", use_threads=False).aggregate([("id", "first")])
    of_key = pa.table({"key": first["key"], "representative": first["id_first"]})
    dups = ordered.filter(pc.is_in(ordered["id"], value_set=duplicate_ids))
    joined = dups.select(["id", "key", "source", "source_ref"]).join(of_key, "key")
    return joined.select(["id", "representative", "source", "source_ref"]).sort_by("id")


def _slices(todo: pa.Table, per_task: int) -> list[tuple[Slice, str]]:
    """Return (slice, output name) pairs covering every record of `todo` with at most
    `per_task` of them per slice, each slice within one part (rows between them that are not
    in `todo` are skipped by the task). The name is the sha256 of the slice's cache keys
    (of its place when there are none): the same work always writes the same file."""
    out: list[tuple[Slice, str]] = []
    if todo.num_rows == 0:
        return out
    ordered = todo.sort_by([("part", "ascending"), ("row", "ascending")])
    parts = ordered["part"].to_pylist()
    rows = ordered["row"].to_pylist()
    keys = ordered["ckey"].to_pylist() if "ckey" in todo.column_names else None
    start = 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows) and stop - start < per_task and parts[stop] == parts[start]:
            stop += 1
        piece = Slice(parts[start], rows[start], rows[stop - 1] + 1 - rows[start])
        what = keys[start:stop] if keys is not None else [piece.part, piece.offset]
        out.append((piece, hashlib.sha256(canonical_json(what).encode()).hexdigest()))
        start = stop
    return out


def writer_index(rows: pa.Table) -> tuple[pa.Table, list[str]]:
    """Return ROWS_SCHEMA rows as the writer's INDEX_SCHEMA rows (part numbers) and the part
    paths those numbers index."""
    encoded = pc.dictionary_encode(rows["part"]).combine_chunks()
    index = pa.table(
        {
            "split": rows["split"],
            "id": rows["id"],
            "part": encoded.indices.cast(pa.int32()),
            "row": rows["row"],
            "nbytes": rows["nbytes"],
        },
        schema=INDEX_SCHEMA,
    )
    return index, encoded.dictionary.to_pylist()


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column.combine_chunks()) if len(column) else []
    return {c["values"].as_py(): c["counts"].as_py() for c in counts}


class RunProgress(Protocol):
    """Receives per-stage progress; the CLI draws it with rich."""

    def start(self, stage: str, total: int | None) -> None: ...
    def advance(self, stage: str, n: int) -> None: ...
    def finish(self, stage: str) -> None: ...


class _NoProgress:
    def start(self, stage: str, total: int | None) -> None:
        pass

    def advance(self, stage: str, n: int) -> None:
        pass

    def finish(self, stage: str) -> None:
        pass


@dataclass
class StageCounts:
    """Records into and out of one stage; `in == out + dropped + quarantined` must hold."""

    records_in: int = 0
    out: int = 0
    dropped: int = 0
    quarantined: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, int]:
        return {
            "in": self.records_in,
            "out": self.out,
            "dropped": self.dropped,
            "quarantined": self.quarantined,
            **self.extra,
        }


@dataclass(frozen=True)
class RecordReuse:
    """Original records a run took from earlier work (`reused`) vs processed anew (`computed`).

    Both count original records of the record pass, as the cache counts them (it sets
    `DataJob.reuse`); an unchanged rerun found before any work reuses all of its version's
    (that run's reused + computed). `basis` says how the two were counted.
    """

    reused: int
    computed: int
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {"reused": self.reused, "computed": self.computed, "basis": self.basis}


@dataclass
class RunResult:
    """The outcome of a run: the version that holds the data and what each stage did."""

    name: str
    version: int
    content_id: str
    path: str
    unchanged: bool
    splits: dict[str, int]
    counts: dict[str, dict[str, int]]
    split_groups: dict[str, int] | None
    run_id: str
    manifest_path: str
    quarantine_path: str | None
    reuse: RecordReuse
    # True when the inputs, recipe hash and code equalled the latest version's: no stage ran.
    stages_skipped: bool = False
    seconds: float = 0.0
    train: dict[str, Any] | None = None
    unmapped_fields: dict[str, dict[str, int]] = field(default_factory=dict)
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # pass -> node id -> tasks

    def to_dict(self) -> dict[str, Any]:
        """Return the `--json` object of `roleforge run`."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "content_id": self.content_id,
            "path": self.path,
            "unchanged": self.unchanged,
            "splits": self.splits,
            "split_groups": self.split_groups,
            "counts": self.counts,
            "unmapped_fields": self.unmapped_fields,
            "reused": self.reuse.reused,
            "computed": self.reuse.computed,
            "nodes": self.nodes,
        }
        if self.train is not None:
            out["train"] = self.train
        return out


class DataJob:
    """One run of a recipe's data job; `run()` returns the committed (or unchanged) version."""

    def __init__(
        self, recipe: Recipe, progress: RunProgress | None = None, run_id: str | None = None
    ):
        self.recipe = recipe
        self.progress = progress or _NoProgress()
        self.run_id = run_id or new_run_id()
        self.fs, store_path = store_fs(recipe.store_uri, **recipe.store_options.fs_kwargs())
        self.store = Store(store_path, recipe.name, self.fs)
        self.staging = self.store.staging_dir(self.run_id)
        self.counts = {name: StageCounts() for name in STAGES}
        self.reasons: Counter[str] = Counter()
        self.stats = AugmentStats()
        self.originals: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()
        self.splitter = SplitStage(recipe.split, recipe.seed)
        self.quarantine = QuarantineWriter(self.store.quarantine_path(self.run_id), self.fs)
        self.unmapped_fields: dict[str, Counter[str]] = {s.name: Counter() for s in recipe.sources}
        # The per-record cache's counts, set by the cache when it runs (before `_manifest`);
        # None: every original that entered the record pass was computed.
        self.reuse: RecordReuse | None = None
        self.media_inputs: list[InputFile] = []  # the ingest tasks pin the media files
        self.cache = RecordCache(self.store.root, self.fs) if recipe.execution.cache else None
        # Tasks per Ray node id, per pass: where the work ran (a cluster run shows it).
        self.nodes: dict[str, Counter[str]] = {}

    # ---- stages ----

    def _ran_on(self, stage: str, node: str) -> None:
        if node:
            self.nodes.setdefault(stage, Counter())[node] += 1

    def _ingest(self) -> pa.Table:
        """Read every source in tasks (several for a source of many files); return the
        KEYS_SCHEMA rows of every record."""
        from pipeline.readers import source_files
        from pipeline.readers.source_fs import SourceFS

        # Made here, so every task reads the sources with the driver's endpoint and keys.
        source_fs = SourceFS.of(self.recipe)
        counts = self.counts["ingest"]
        calls = []
        names = []
        # A source of many files is read by several tasks (a group of files each).
        tasks_per_source = max(1, cluster_cpus() * INGEST_TASKS_PER_CPU)
        for i, source in enumerate(self.recipe.sources):
            files = source_files(source, self.recipe)
            per_task = max(1, -(-len(files) // tasks_per_source))
            groups = [files[j : j + per_task] for j in range(0, len(files), per_task)] or [[]]
            for g, group in enumerate(groups):
                folder = os.path.join(self.staging, "ingest", f"s{i}-{g}")
                first = g == 0
                recipe, splitter = self.recipe, self.splitter
                calls.append(
                    (len(calls), source, group, first, recipe, splitter, folder, self.fs, source_fs)
                )
                names.append(source.name)
        self.progress.start("ingest", len(calls))
        resources = StageResources.for_stage(self.recipe.execution, "ingest")
        outcomes: list[IngestOutcome | None] = [None] * len(calls)
        for i, outcome in run_tasks(ingest_source, calls, resources):
            outcomes[i] = outcome
            self._ran_on("ingest", outcome.node)
            self.progress.advance("ingest", 1)
        keys = []
        # In recipe order, so the quarantine file reads the same whatever finished first.
        for outcome, name in zip(outcomes, names, strict=True):
            assert outcome is not None
            counts.records_in += outcome.records_in
            for entry in outcome.rejected:
                self._quarantine(counts, entry)
            self.unmapped_fields[name].update(outcome.unmapped_fields)
            self.media_inputs.extend(outcome.media)
            keys.append(outcome.keys)
        table = pa.concat_tables(keys) if keys else KEYS_SCHEMA.empty_table()
        counts.out = table.num_rows
        self.progress.finish("ingest")
        return table

    def _quarantine(self, counts: StageCounts, entry: QuarantineEntry) -> None:
        self.quarantine.write(entry)
        self.reasons[entry.reason] += 1
        counts.quarantined += 1

    def _record_pass(
        self, todo: pa.Table, skip_ids: pa.Array
    ) -> tuple[pa.Table, list[QuarantineEntry]]:
        """Run validate -> split -> augment over the records of `todo` (KEYS_SCHEMA, plus
        `ckey` when the cache is on; rows of their parts in `skip_ids` are left alone);
        return the ROWS_SCHEMA rows of what the tasks wrote and their quarantine entries."""
        import ray

        resources = StageResources.for_stage(self.recipe.execution, "augment", "validate")
        self.progress.start("records", todo.num_rows)
        augmenter = None
        if self.recipe.augment.copies > 0:
            from augmenters import RecordAugmenter

            augmenter = RecordAugmenter(
                self.recipe.augment, self.recipe.seed, self.recipe.recipe_hash
            )
        context = ray.put(
            PassContext(
                fs=self.fs,
                limits=self.recipe.limits,
                duplicate_ids=skip_ids,
                splitter=self.splitter,
                augmenter=augmenter,
                batch_size=resources.batch_size,
            )
        )
        per_task = slice_rows(todo.num_rows, cluster_cpus(), resources.batch_size)
        folder = (
            self.cache.parts_dir
            if self.cache is not None
            else os.path.join(self.staging, "records")
        )
        calls = [
            ([piece], os.path.join(folder, f"{name}.arrow"), context)
            for piece, name in _slices(todo, per_task)
        ]
        rows: list[pa.Table] = []
        rejected: list[tuple[int, list[QuarantineEntry]]] = []
        for i, outcome in run_tasks(record_pass, calls, resources):
            self._ran_on("records", outcome.node)
            rows.append(outcome.rows)
            rejected.append((i, outcome.rejected))
            self.stats.merge(outcome.stats)
            self.progress.advance("records", outcome.originals + len(outcome.rejected))
        self.progress.finish("records")
        entries = [e for _, batch in sorted(rejected, key=lambda item: item[0]) for e in batch]
        return (pa.concat_tables(rows) if rows else ROWS_SCHEMA.empty_table()), entries

    def _records(
        self, todo: pa.Table, duplicate_ids: pa.Array
    ) -> tuple[pa.Table, list[QuarantineEntry]]:
        """Return the rows and rejects of every non-duplicate record: from the cache where
        its key hits, from the record pass otherwise."""
        if self.cache is None:
            rows, entries = self._record_pass(todo, duplicate_ids)
            self.reuse = RecordReuse(reused=0, computed=todo.num_rows, basis="no cache")
            return rows, entries
        todo = self._keyed(todo)
        misses, hits, stale = self._cached(todo)
        hit_ids = todo["id"].filter(pc.invert(pc.is_in(todo["id"], value_set=misses["id"])))
        skip = pa.concat_arrays([duplicate_ids, hit_ids.combine_chunks().cast(pa.string())])
        rows, entries = self._record_pass(misses, skip)
        reused, rebased, reused_entries = self._reused(hits, stale)
        self._remember(todo, pa.concat_tables([rows, rebased]), entries)
        self.reuse = RecordReuse(
            reused=todo.num_rows - misses.num_rows, computed=misses.num_rows, basis="record cache"
        )
        return pa.concat_tables([rows, reused, rebased]), entries + reused_entries

    # ---- the per-record cache ----

    def _keyed(self, todo: pa.Table) -> pa.Table:
        """Return `todo` with each record's cache key (`ckey`) and assigned split."""
        splits = [self.splitter.split_of(g) for g in todo["group"].to_pylist()]
        keyer = CacheKeys(self.recipe, code_version().identity())
        ckeys = [
            keyer.key(c, s, i, a)
            for c, s, i, a in zip(
                todo["content"].to_pylist(),
                splits,
                todo["images"].to_pylist(),
                todo["audios"].to_pylist(),
                strict=True,
            )
        ]
        todo = todo.append_column("split", pa.array(splits, pa.string()))
        return todo.append_column("ckey", pa.array(ckeys, pa.string()))

    def _cached(self, todo: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
        """Split `todo` by the cache: return (misses, hit rows as they lie in the cache,
        hit rows made under another recipe, which must be rebased)."""
        assert self.cache is not None
        index = self.cache.index()
        empty = index.schema.empty_table()
        if index.num_rows == 0 or todo.num_rows == 0:
            return todo, empty, empty
        index = index.filter(pc.is_in(index["key"], value_set=todo["ckey"].combine_chunks()))
        if index.num_rows == 0:
            return todo, empty, empty
        # One run's rows per key: the newest run under this recipe, else the newest at all.
        same = pc.equal(index["recipe_hash"], self.recipe.recipe_hash)
        flagged = index.append_column("same", pc.cast(same, pa.int8()))
        best = flagged.group_by("key", use_threads=False).aggregate([("same", "max")])
        flagged = flagged.join(best, "key")
        flagged = flagged.filter(pc.equal(flagged["same"], flagged["same_max"]))
        newest = flagged.group_by("key", use_threads=False).aggregate([("run_id", "max")])
        chosen = flagged.join(newest, "key")
        chosen = chosen.filter(pc.equal(chosen["run_id"], chosen["run_id_max"]))
        chosen = chosen.drop_columns(["same_max", "run_id_max"])
        # A part that has gone (pruned by hand) makes its keys misses, not errors.
        parts = [p for p in chosen["part"].unique().to_pylist() if p is not None]
        missing = [p for p in parts if not self.fs.exists(self.cache.part_path(p))]
        if missing:
            log.warning(
                "cache: %d part file(s) missing; their records are recomputed", len(missing)
            )
            chosen = chosen.filter(
                pc.invert(
                    pc.fill_null(pc.is_in(chosen["part"], value_set=pa.array(missing)), False)
                )
            )
        hit_keys = chosen["key"].unique()
        misses = todo.filter(pc.invert(pc.is_in(todo["ckey"], value_set=hit_keys)))
        current = pc.equal(chosen["same"], 1)
        chosen = chosen.drop_columns(["same"])
        return misses, chosen.filter(current), chosen.filter(pc.invert(current))

    def _reused(
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
                self.stats.merge(AugmentStats.from_dict(json.loads(text)))
        return kept, rebased, entries

    def _as_rows(self, cached: pa.Table) -> pa.Table:
        assert self.cache is not None
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
            },
            schema=ROWS_SCHEMA,
        )

    def _rebased(self, stale: pa.Table) -> pa.Table:
        """Copy cached rows made under another recipe into new cache parts with this recipe's
        variant ids; one task per cached part."""
        assert self.cache is not None
        resources = StageResources.for_stage(self.recipe.execution, "augment", "validate")
        calls = []
        for part in sorted(stale["part"].unique().to_pylist()):
            of_part = stale.filter(pc.equal(stale["part"], part)).sort_by("row")
            keys = sorted(set(of_part["key"].to_pylist()))
            name = hashlib.sha256(
                canonical_json([self.recipe.recipe_hash, keys]).encode()
            ).hexdigest()
            calls.append(
                (
                    self.cache.part_path(part),
                    of_part["row"].to_pylist(),
                    of_part["stats"].to_pylist(),
                    self.recipe.recipe_hash,
                    self.cache.part_path(f"{name}.arrow"),
                    self.fs,
                )
            )
        out = []
        for _, (rows, node) in run_tasks(rebase_rows, calls, resources):
            self._ran_on("rebase", node)
            out.append(rows)
        return pa.concat_tables(out) if out else ROWS_SCHEMA.empty_table()

    def _remember(self, todo: pa.Table, rows: pa.Table, entries: list[QuarantineEntry]) -> None:
        """Add what this run computed (or rebased) to the cache index."""
        assert self.cache is not None
        owner = pc.coalesce(rows["parent_id"], rows["id"])
        keyed = rows.append_column("owner", owner).join(
            todo.select(["id", "ckey"]).rename_columns(["owner", "key"]), "owner"
        )
        names = [os.path.basename(p) for p in keyed["part"].to_pylist()]
        made = self._index_rows(
            keyed.drop_columns(["part"]).append_column("part", pa.array(names, pa.string()))
        )
        ids = pa.array([e.record_id for e in entries], pa.string())
        texts = pa.array([json.dumps(e.to_dict()) for e in entries], pa.string())
        # Inner join: an entry of a record that is not in `todo` has no key to keep it under.
        rejected = (
            pa.table({"id": ids, "rejection": texts})
            .join(todo.select(["id", "ckey", "split"]), "id")
            .rename_columns({"ckey": "key"})
        )
        rows = pa.concat_tables([made, self._index_rows(rejected)])
        try:
            self.cache.add(self.run_id, rows)
        except OSError as exc:
            # A cache that cannot be written costs the next run a recomputation, not this run.
            log.warning("cache: could not write the index of run %s: %s", self.run_id, exc)

    def _index_rows(self, table: pa.Table) -> pa.Table:
        """Return `table`'s columns as CACHE_INDEX_SCHEMA rows stamped with this run and
        recipe; columns it lacks are null."""
        n = table.num_rows
        stamp = {"run_id": self.run_id, "recipe_hash": self.recipe.recipe_hash}
        columns = {}
        for f in CACHE_INDEX_SCHEMA:
            if f.name in stamp:
                columns[f.name] = pa.array([stamp[f.name]] * n, f.type)
            elif f.name in table.column_names:
                columns[f.name] = table[f.name]
            else:
                columns[f.name] = pa.nulls(n, f.type)
        return pa.table(columns, schema=CACHE_INDEX_SCHEMA)

    def _settle(
        self, keys: pa.Table, duplicates: pa.Table, rows: pa.Table, rejected: dict[str, str]
    ) -> None:
        """Count every stage from the pass's facts. A duplicate was never validated: it
        shares its representative's content, so it shares its fate too: quarantined with
        the same reason when that was rejected, dropped by dedup otherwise."""
        validate, dedup = self.counts["validate"], self.counts["dedup"]
        validate.records_in = keys.num_rows
        reps = duplicates["representative"].to_pylist()
        of_rejected = [i for i, rep in enumerate(reps) if rep in rejected]
        if of_rejected:
            where = duplicates.take(pa.array(of_rejected, pa.int64()))
            for dup, rep, source, ref in zip(
                *(where[c].to_pylist() for c in ("id", "representative", "source", "source_ref")),
                strict=True,
            ):
                self._quarantine(
                    validate,
                    QuarantineEntry(
                        stage="validate",
                        reason=rejected[rep],
                        message=f"exact duplicate of {rep}, which was rejected for it",
                        source=source or "",
                        source_ref=ref or "",
                        record_id=dup,
                    ),
                )
        validate.out = validate.records_in - validate.quarantined
        dedup.records_in = validate.out
        dedup.dropped = duplicates.num_rows - len(of_rejected)
        dedup.out = dedup.records_in - dedup.dropped
        split = self.counts["split"]
        split.records_in = split.out = dedup.out
        augment = self.counts["augment"]
        augment.records_in = split.out
        is_variant = pc.is_valid(rows["parent_id"])
        variants = int(pc.sum(is_variant).as_py() or 0)
        augment.out = rows.num_rows - variants
        augment.extra = {"variants": variants, "empty_variants": self.stats.empty_variants}
        originals = rows.filter(pc.invert(is_variant))
        self.originals.update(_value_counts(originals["split"]))
        self.rows.update(_value_counts(rows["split"]))

    def _check_bad_fraction(self) -> None:
        total = self.counts["ingest"].records_in
        bad = sum(c.quarantined for c in self.counts.values())
        try:
            check_bad_fraction(
                bad, total, self.recipe.max_bad_fraction, self.reasons, self.quarantine.path
            )
        except TooManyBadRecords:
            self.quarantine.close()
            raise

    def _write(self, rows: pa.Table) -> list[ShardEntry]:
        """Plan the shards from the rows' facts; write each in its own task."""
        import ray

        counts = self.counts["write"]
        counts.records_in = rows.num_rows
        index, paths = writer_index(rows)
        writer = ShardWriter(
            os.path.join(self.staging, "version"),
            self.recipe.output.format,
            parse_size(self.recipe.output.shard_size),  # defaults skip the validator
            self.fs,
        )
        plans = plan_shards(index, writer.fmt, writer.shard_size)
        self.progress.start("write", rows.num_rows)
        self.fs.makedirs(writer.folder)
        shared = ray.put(writer)
        calls = [(*localized(plan, paths), shared) for plan in plans]
        resources = StageResources.for_stage(self.recipe.execution, "write")
        shards: list[ShardEntry | None] = [None] * len(plans)
        for i, (entry, node) in run_tasks(write_shard, calls, resources):
            shards[i] = entry
            self._ran_on("write", node)
            self.progress.advance("write", entry.rows)
        self.fs.fsync_dir(writer.folder)
        counts.out = sum(s.rows for s in shards if s is not None)
        self.progress.finish("write")
        return [s for s in shards if s is not None]

    # ---- the job ----

    def _manifest(
        self, inputs: list[InputFile], shards: list[ShardEntry], duplicates: int
    ) -> Manifest:
        """Return the staged version's manifest: everything but version, parent and cards."""
        reuse = self._record_reuse()
        schema_hash = schema_sha256(RECORD_SCHEMA)
        quarantine_path = None
        if sum(self.reasons.values()):
            quarantine_path = os.path.relpath(self.quarantine.path, self.store.root)
        return Manifest(
            name=self.recipe.name,
            run_id=self.run_id,
            created_at=datetime.now(timezone.utc)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            inputs=inputs,
            recipe=self.recipe.model_dump(mode="json"),
            recipe_hash=self.recipe.recipe_hash,
            code_version=code_version(),
            counts={
                name: StageCount.model_validate(c.to_dict()) for name, c in self.counts.items()
            },
            reuse=ReuseSummary(reused=reuse.reused, computed=reuse.computed),
            quarantine=QuarantineSummary(
                path=quarantine_path, reasons=dict(sorted(self.reasons.items()))
            ),
            augmentation=augmentation_summary(self.recipe, self.stats.to_dict()),
            dedup=DedupSummary(duplicates=duplicates),
            splits={s: self.rows.get(s, 0) for s in SPLITS},
            originals={s: self.originals.get(s, 0) for s in SPLITS},
            split_groups=dict(self.splitter.plan.groups) if self.splitter.plan else None,
            unmapped_fields={n: dict(sorted(c.items())) for n, c in self.unmapped_fields.items()},
            shards=shards,
            schema_sha256=schema_hash,
            content_id=content_id(schema_hash, [s.sha256 for s in shards]),
        )

    def run(self) -> RunResult:
        """Run every stage and commit; raise TooManyBadRecords, CommitCheckFailed,
        RecipeError (missing sources) or InjectedFault (tests) without publishing."""
        import time

        from pipeline.readers import check_source_paths

        started = time.perf_counter()
        check_source_paths(self.recipe)
        self._check_writable()
        unchanged = self._unchanged_version()
        if unchanged is not None:
            unchanged.seconds = time.perf_counter() - started
            return unchanged
        # Only now the op libraries: the version found above was made from this very recipe
        # and code, which passed this check then (`roleforge run` loads without it).
        check_recipe_ops(self.recipe)
        # The lease, taken before the run's first file, tells `gc` this run is alive.
        with RunLease(self.store, self.run_id):
            try:
                manifest = self._stages()
            except BaseException:
                # Nothing of this run can be published: its work files go now (the
                # quarantine file stays, to say why); `gc` would find them otherwise.
                self.fs.remove_tree(self.staging)
                raise
            result = self._commit(manifest)
        result.seconds = time.perf_counter() - started
        return result

    def _unchanged_version(self) -> RunResult | None:
        """Return the latest version as unchanged when it was built from exactly these inputs
        (sha256, media included), recipe hash, card metadata and code identity, found from
        hashes alone: nothing is read, no Ray starts, no stage runs. Else None."""
        try:
            latest = self.store.manifest()
        except VersionNotFound:
            return None
        if latest.reuse is None or latest.recipe_hash != self.recipe.recipe_hash:
            return None  # no reuse counts: written before this check (and media pins)
        if latest.code_version.identity() != code_version().identity():
            return None
        # A licence is outside the recipe hash but on the card: its change is a new version.
        if card_metadata(latest.recipe) != card_metadata(self.recipe.model_dump(mode="json")):
            return None
        if not unchanged_inputs(self.recipe, latest.inputs):
            return None
        version = latest.number
        log.info("%s: inputs, recipe and code equal v%d's; nothing to do", latest.name, version)
        originals = latest.reuse.reused + latest.reuse.computed  # its run's, all reused now
        return RunResult(
            name=self.recipe.name,
            version=version,
            content_id=latest.content_id,
            path=self.store.version_dir(version),
            unchanged=True,
            splits=dict(latest.splits),
            counts={name: c.model_dump(by_alias=True) for name, c in latest.counts.items()},
            split_groups=latest.split_groups,
            run_id=self.run_id,
            manifest_path=self.store.manifest_path(version),
            quarantine_path=None,
            reuse=RecordReuse(originals, 0, f"inputs, recipe and code equal v{version}'s"),
            stages_skipped=True,
            unmapped_fields=latest.unmapped_fields,
        )

    def _check_writable(self) -> None:
        """Raise StoreNotWritable before any work when the store or cards folder is not ours
        to write."""
        self.fs.check_writable(self.store.root)
        for sub in ("versions", "_staging", "quarantine"):
            if self.fs.exists(os.path.join(self.store.root, sub)):
                self.fs.check_writable(os.path.join(self.store.root, sub))
        # The cards' git copy is always a local folder, whatever the store.
        LocalFS().check_writable(
            os.path.join(self.recipe.resolve(self.recipe.cards_dir), self.recipe.name)
        )

    def _stages(self) -> Manifest:
        """Run the stages from ingest to write, into staging; return the staged manifest."""
        try:
            ensure_ray()
            keys = self._ingest()
            inputs = pinned_inputs(self.recipe, self.media_inputs)
            self._check_bad_fraction()
            duplicates = duplicates_of(keys)
            kept = pc.invert(pc.is_in(keys["id"], value_set=duplicates["id"]))
            self.splitter = self.splitter.planned(keys["group"].filter(kept).to_pylist())
            rows, entries = self._records(keys.filter(kept), duplicates["id"].combine_chunks())
            rejected = {e.record_id: e.reason for e in entries if e.record_id}
            for entry in entries:
                self._quarantine(self.counts["validate"], entry)
            self._settle(keys, duplicates, rows, rejected)
            self._check_bad_fraction()
            check_something_to_publish(
                rows.num_rows, self.counts["ingest"].records_in, self.reasons, self.quarantine.path
            )
            shards = self._write(rows)
        except BaseException:
            # The first error is the one to report: closing the quarantine file on a full
            # disk would raise a second one and mask it.
            self.quarantine.close(quiet=True)
            raise
        self.quarantine.close()
        check_counts({name: c.to_dict() for name, c in self.counts.items()})
        if sum(self.rows.values()) != self.counts["write"].out:
            raise CommitCheckFailed("rows per split do not add up to the rows written")
        return self._manifest(inputs, shards, self.counts["dedup"].dropped)

    def _commit(self, manifest: Manifest) -> RunResult:
        from pipeline.cards.write import write_cards
        from pipeline.store.diff import summarize_against_parent

        committer = VersionCommitter(
            self.store,
            self.fs,
            write_cards=write_cards,
            summarize_diff=summarize_against_parent,
            cards_copy_dir=self.recipe.resolve(self.recipe.cards_dir),
        )
        committed = committer.commit(os.path.join(self.staging, "version"), manifest)
        # Only now is the staging folder garbage: a fault above leaves it for `roleforge gc`.
        self.fs.remove_tree(self.staging)
        if committed.unchanged:
            log.info("%s: unchanged, content equals v%d", self.recipe.name, committed.version)
        m = committed.manifest
        return RunResult(
            name=self.recipe.name,
            version=committed.version,
            content_id=committed.content_id,
            path=committed.path,
            unchanged=committed.unchanged,
            splits=dict(m.splits),
            counts={name: c.to_dict() for name, c in self.counts.items()},
            split_groups=manifest.split_groups,
            run_id=self.run_id,
            manifest_path=self.store.manifest_path(committed.version),
            quarantine_path=self.quarantine.path if sum(self.reasons.values()) else None,
            reuse=self._record_reuse(),
            unmapped_fields=manifest.unmapped_fields,
            nodes={stage: dict(sorted(c.items())) for stage, c in self.nodes.items()},
        )

    def _record_reuse(self) -> RecordReuse:
        """Return the cache's counts, or (no record pass counted them) every original that
        validation read as computed."""
        if self.reuse is not None:
            return self.reuse
        computed = self.counts["validate"].records_in
        return RecordReuse(0, computed, "no per-record cache: every original was computed")


def run_recipe(recipe: Recipe, progress: RunProgress | None = None) -> RunResult:
    """Return the result of running a recipe's data job (training is `train_result`'s job)."""
    return DataJob(recipe, progress).run()


def train_result(recipe: Recipe, result: RunResult) -> RunResult:
    """Fine-tune on the version `result` names, per the recipe's `train:`; attach the outcome."""
    from trainers import train_version

    trained = train_version(
        recipe.store_uri, recipe.name, result.version, recipe.train, recipe.seed
    )
    result.train = trained.to_dict()
    return result
