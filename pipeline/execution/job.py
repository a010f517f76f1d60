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
from pipeline.execution.ledger import RecordReuse, RunLedger
from pipeline.execution.passes import (
    KEYS_SCHEMA,
    ROWS_SCHEMA,
    IngestOutcome,
    IngestShared,
    IngestTask,
    PassContext,
    PassTask,
    RebaseTask,
    build_stages,
    ingest_source,
    rebase_rows,
    record_pass,
    write_shard,
)
from pipeline.execution.plan import RecordPlan, pass_slices, plan_records, writer_index
from pipeline.execution.provenance import (
    augmentation_summary,
    code_version,
    pinned_inputs,
    unchanged_inputs,
)
from pipeline.recipe import Recipe, check_recipe_ops, parse_size
from pipeline.record.ids import canonical_json, new_run_id
from pipeline.record.rejection import QuarantineEntry
from pipeline.record.schema import RECORD_SCHEMA, SPLITS
from pipeline.stages.split import SplitStage
from pipeline.store.cache import RecordCache
from pipeline.store.commit import (
    CommitCheckFailed,
    VersionCommitter,
    card_metadata,
    check_counts,
)
from pipeline.store.fs import LocalFS
from pipeline.store.lock import RunLease
from pipeline.store.manifest import (
    DedupSummary,
    InputFile,
    Manifest,
    QuarantineSummary,
    ReuseSummary,
    ShardEntry,
    StageCount,
    content_id,
    schema_sha256,
)
from pipeline.store.quarantine import QuarantinePart, QuarantineWriter, read_quarantine_part
from pipeline.store.read import Store, VersionNotFound
from pipeline.store.store_fs import store_fs
from pipeline.store.writer import ShardWriter, localized, plan_shards

log = logging.getLogger(__name__)


# Ingest tasks per CPU for a source of many files (each reads a group of them).
INGEST_TASKS_PER_CPU = 2


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
        # Unplanned until the record plan sees the run's groups (`_plan`).
        self.splitter = SplitStage(recipe.split, recipe.seed)
        self.quarantine = QuarantineWriter(self.store.quarantine_path(self.run_id), self.fs)
        self.ledger = RunLedger([s.name for s in recipe.sources], self.quarantine)
        self.media_inputs: list[InputFile] = []  # the ingest tasks pin the media files
        self.cache = RecordCache(self.store.root, self.fs) if recipe.execution.cache else None

    # ---- stages ----

    def _ingest(self) -> pa.Table:
        """Read every source in tasks (several for a source of many files); return the
        KEYS_SCHEMA rows of every record."""
        from pipeline.readers import source_files
        from pipeline.readers.source_fs import SourceFS

        # Made here, so every task reads the sources with the driver's endpoint and keys.
        source_fs = SourceFS.of(self.recipe)
        counts = self.ledger.counts["ingest"]
        shared = IngestShared(self.recipe, self.splitter, self.fs, source_fs)
        calls = []
        names = []
        # A source of many files is read by several tasks (a group of files each).
        tasks_per_source = max(1, cluster_cpus() * INGEST_TASKS_PER_CPU)
        for i, source in enumerate(self.recipe.sources):
            files = source_files(source, self.recipe)
            per_task = max(1, -(-len(files) // tasks_per_source))
            groups = [files[j : j + per_task] for j in range(0, len(files), per_task)] or [[]]
            for g, group in enumerate(groups):
                task = IngestTask(
                    index=len(calls),
                    source=source,
                    files=group,
                    book_entries=g == 0,
                    folder=os.path.join(self.staging, "ingest", f"s{i}-{g}"),
                    quarantine_path=self._quarantine_part_path(f"ingest-s{i}-{g}"),
                )
                calls.append((task, shared))
                names.append(source.name)
        self.progress.start("ingest", len(calls))
        resources = StageResources.for_stage(self.recipe.execution, "ingest")
        outcomes: list[IngestOutcome | None] = [None] * len(calls)
        for i, outcome in run_tasks(ingest_source, calls, resources):
            outcomes[i] = outcome
            self.ledger.ran_on("ingest", outcome.node)
            self.progress.advance("ingest", 1)
        keys = []
        # In recipe order, so the quarantine file reads the same whatever finished first.
        for outcome, name in zip(outcomes, names, strict=True):
            assert outcome is not None
            counts.records_in += outcome.records_in
            for entry in self._quarantined_by(outcome.quarantine):
                self.ledger.quarantine("ingest", entry)
            self.ledger.unmapped_fields[name].update(outcome.unmapped_fields)
            self.media_inputs.extend(outcome.media)
            keys.append(outcome.keys)
        table = pa.concat_tables(keys) if keys else KEYS_SCHEMA.empty_table()
        counts.out = table.num_rows
        self.progress.finish("ingest")
        return table

    def _quarantine_part_path(self, name: str) -> str:
        return os.path.join(self.staging, "quarantine", f"{name}.jsonl")

    def _quarantined_by(self, part: QuarantinePart | None) -> list[QuarantineEntry]:
        """Return the entries of a task's quarantine part (none when it rejected nothing)."""
        return read_quarantine_part(part, self.fs) if part is not None else []

    def _record_pass(
        self, todo: pa.Table, skip_ids: pa.Array, split: SplitStage
    ) -> tuple[pa.Table, list[QuarantineEntry]]:
        """Run the recipe's stages (`build_stages`, with the planned `split`) over the records
        of `todo` (KEYS_SCHEMA, plus `ckey` when the cache is on; rows of their parts in
        `skip_ids` are left alone); return the ROWS_SCHEMA rows of what the tasks wrote and
        their quarantine entries, in task order."""
        import ray

        resources = StageResources.for_stage(self.recipe.execution, "augment", "validate")
        self.progress.start("records", todo.num_rows)
        context = ray.put(
            PassContext(
                fs=self.fs,
                stages=build_stages(self.recipe, split),
                skip_ids=skip_ids,
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
            (
                PassTask(
                    slices=[piece],
                    output=os.path.join(folder, f"{name}.arrow"),
                    quarantine_path=self._quarantine_part_path(f"records-{name}"),
                ),
                context,
            )
            for piece, name in pass_slices(todo, per_task)
        ]
        rows: list[pa.Table] = []
        parts: list[tuple[int, QuarantinePart | None]] = []
        for i, outcome in run_tasks(record_pass, calls, resources):
            self.ledger.ran_on("records", outcome.node)
            rows.append(outcome.rows)
            parts.append((i, outcome.quarantine))
            self.ledger.stats.merge(outcome.stats)
            self.progress.advance("records", outcome.records_in)
        self.progress.finish("records")
        # In task order, so the quarantine file reads the same whatever finished first.
        entries = [
            e for _, part in sorted(parts, key=lambda p: p[0]) for e in self._quarantined_by(part)
        ]
        return (pa.concat_tables(rows) if rows else ROWS_SCHEMA.empty_table()), entries

    def _records(self, plan: RecordPlan) -> tuple[pa.Table, list[QuarantineEntry]]:
        """Return the rows and rejects of every non-duplicate record: from the cache where
        its key hits, from the record pass otherwise."""
        todo, duplicate_ids = plan.todo, plan.duplicate_ids
        if self.cache is None:
            rows, entries = self._record_pass(todo, duplicate_ids, plan.split)
            self.ledger.reuse = RecordReuse(reused=0, computed=todo.num_rows, basis="no cache")
            return rows, entries
        todo = self._keyed(todo, plan.split)
        misses, hits, stale = self.cache.lookup(todo, self.recipe.recipe_hash)
        hit_ids = todo["id"].filter(pc.invert(pc.is_in(todo["id"], value_set=misses["id"])))
        skip = pa.concat_arrays([duplicate_ids, hit_ids.combine_chunks().cast(pa.string())])
        rows, entries = self._record_pass(misses, skip, plan.split)
        reused, rebased, reused_entries = self._reused(hits, stale)
        self._remember(todo, pa.concat_tables([rows, rebased]), entries)
        self.ledger.reuse = RecordReuse(
            reused=todo.num_rows - misses.num_rows, computed=misses.num_rows, basis="record cache"
        )
        return pa.concat_tables([rows, reused, rebased]), entries + reused_entries

    # ---- the per-record cache ----

    def _keyed(self, todo: pa.Table, split: SplitStage) -> pa.Table:
        """Return `todo` with each record's cache key (`ckey`) and assigned split."""
        splits = [split.split_of(g) for g in todo["group"].to_pylist()]
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
                self.ledger.stats.merge(AugmentStats.from_dict(json.loads(text)))
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
            task = RebaseTask(
                part=self.cache.part_path(part),
                rows=of_part["row"].to_pylist(),
                stats=of_part["stats"].to_pylist(),
                recipe_hash=self.recipe.recipe_hash,
                output=self.cache.part_path(f"{name}.arrow"),
            )
            calls.append((task, self.fs))
        out = []
        for _, outcome in run_tasks(rebase_rows, calls, resources):
            self.ledger.ran_on("rebase", outcome.node)
            out.append(outcome.rows)
        return pa.concat_tables(out) if out else ROWS_SCHEMA.empty_table()

    def _remember(self, todo: pa.Table, rows: pa.Table, entries: list[QuarantineEntry]) -> None:
        """Add what this run computed (or rebased) to the cache index."""
        assert self.cache is not None
        owner = pc.coalesce(rows["parent_id"], rows["id"])
        keyed = rows.append_column("owner", owner).join(
            todo.select(["id", "ckey"]).rename_columns(["owner", "key"]), "owner"
        )
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
        rows = pa.concat_tables([made, self.cache.index_rows(rejected, *stamp)])
        try:
            self.cache.add(self.run_id, rows)
        except OSError as exc:
            # A cache that cannot be written costs the next run a recomputation, not this run.
            log.warning("cache: could not write the index of run %s: %s", self.run_id, exc)

    def _write(self, rows: pa.Table) -> list[ShardEntry]:
        """Plan the shards from the rows' facts; write each in its own task."""
        import ray

        counts = self.ledger.counts["write"]
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
        for i, outcome in run_tasks(write_shard, calls, resources):
            shards[i] = outcome.entry
            self.ledger.ran_on("write", outcome.node)
            self.progress.advance("write", outcome.entry.rows)
        self.fs.fsync_dir(writer.folder)
        counts.out = sum(s.rows for s in shards if s is not None)
        self.progress.finish("write")
        return [s for s in shards if s is not None]

    # ---- the job ----

    def _manifest(
        self, inputs: list[InputFile], shards: list[ShardEntry], plan: RecordPlan
    ) -> Manifest:
        """Return the staged version's manifest: everything but version, parent and cards."""
        ledger = self.ledger
        reuse = ledger.record_reuse()
        schema_hash = schema_sha256(RECORD_SCHEMA)
        quarantine_path = None
        if ledger.quarantined:
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
                name: StageCount.model_validate(c.to_dict()) for name, c in ledger.counts.items()
            },
            reuse=ReuseSummary(reused=reuse.reused, computed=reuse.computed),
            quarantine=QuarantineSummary(
                path=quarantine_path, reasons=dict(sorted(ledger.reasons.items()))
            ),
            augmentation=augmentation_summary(self.recipe, ledger.stats.to_dict()),
            dedup=DedupSummary(duplicates=ledger.counts["dedup"].dropped),
            splits={s: ledger.rows.get(s, 0) for s in SPLITS},
            originals={s: ledger.originals.get(s, 0) for s in SPLITS},
            split_groups=dict(plan.split.plan.groups) if plan.split.plan else None,
            unmapped_fields={n: dict(sorted(c.items())) for n, c in ledger.unmapped_fields.items()},
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
        """Run the data job into staging, room by room: ingest -> plan -> record pass ->
        shards; return the staged manifest."""
        ledger = self.ledger
        try:
            ensure_ray()
            keys = self._ingest()
            inputs = pinned_inputs(self.recipe, self.media_inputs)
            ledger.check_bad_fraction(self.recipe.max_bad_fraction)
            plan = plan_records(keys, self.splitter)
            rows, entries = self._records(plan)
            for entry in entries:
                ledger.quarantine("validate", entry)
            ledger.settle(plan, rows, {e.record_id: e.reason for e in entries if e.record_id})
            ledger.check_bad_fraction(self.recipe.max_bad_fraction)
            shards = self._write(rows)
        except BaseException:
            # The first error is the one to report: closing the quarantine file on a full
            # disk would raise a second one and mask it.
            self.quarantine.close(quiet=True)
            raise
        self.quarantine.close()
        check_counts(ledger.counts_dict())
        if sum(ledger.rows.values()) != ledger.counts["write"].out:
            raise CommitCheckFailed("rows per split do not add up to the rows written")
        return self._manifest(inputs, shards, plan)

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
            counts=self.ledger.counts_dict(),
            split_groups=manifest.split_groups,
            run_id=self.run_id,
            manifest_path=self.store.manifest_path(committed.version),
            quarantine_path=self.quarantine.path if self.ledger.quarantined else None,
            reuse=self.ledger.record_reuse(),
            unmapped_fields=manifest.unmapped_fields,
            nodes={stage: dict(sorted(c.items())) for stage, c in self.ledger.nodes.items()},
        )


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
