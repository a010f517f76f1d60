"""`roleforge run`: the data job of one recipe, from sources to a committed version.

`DataJob.run` goes room by room (docs/ARCHITECTURE.md, "The data flow"); tasks write, the
driver decides and commits small facts and never touches a media byte:
- ingest (`_ingest`): one task per source (or group of its files) writes Arrow IPC parts
  and its quarantine part, and returns the ingest keys (`passes.ingest_keys`);
- plan (`plan.plan_records`): dedup over the keys, the split plan over what stays;
- record pass (`_records`): the recipe's stages (`passes.build_stages`) over slices of the
  parts, through the per-record cache (`cached_records`) when it is on; the media
  near-duplicates it signed are planned after it (`_plan_media`, `media_pairs`);
- shards (`_write`): one task per planned shard, rows in part order, hashed while written
  (with the media near-duplicate flags added to their rows);
- commit (`_commit`): the typed manifest, created exclusively, then the cards.
Counts, reasons and nodes go to one `RunLedger`.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.cards.composition import Composition
from pipeline.execution.cached_quality import cached_quality_tallies
from pipeline.execution.cached_records import CachedRecords
from pipeline.execution.cluster import StageResources, Started, TaskRunner, slice_rows
from pipeline.execution.ingest_memo import load_memo, memo_key, memo_size
from pipeline.execution.ingest_ranges import RangePlan, merge_ranges, plan_ranges
from pipeline.execution.ledger import RunLedger
from pipeline.execution.media_pairs import (
    count_pass_media,
    flags_digests,
    media_of_index,
    media_texts,
    plan_media,
    row_flags,
)
from pipeline.execution.passes import (
    KEYS_SCHEMA,
    ROWS_SCHEMA,
    IngestOutcome,
    IngestShared,
    IngestTask,
    PassContext,
    PassTask,
    StageTally,
    build_stages,
    check_ops,
    count_shard,
    ingest_source,
    quality_stage_names,
    record_pass,
    sign_media_in_pass,
    write_shard,
)
from pipeline.execution.plan import RecordPlan, pass_slices, plan_records, writer_index
from pipeline.execution.provenance import (
    augmentation_summary,
    code_version,
    held_out_sha256,
    media_pins_hold,
    pin_locations,
    pinned_file,
    pinned_inputs,
    remember_pins,
    stamped_pins,
)
from pipeline.execution.run_result import NoProgress, RecordReuse, RunProgress, RunResult
from pipeline.execution.token_counter import WorkerTokenCounter
from pipeline.execution.unchanged import (
    check_writable,
    find_unchanged,
    pin_cache,
    same_recipe_and_code,
)
from pipeline.readers import LinesFrom, check_source_paths, source_files
from pipeline.recipe import Recipe, SourceConfig, check_recipe_ops, parse_size
from pipeline.record.ids import new_run_id
from pipeline.record.rejection import QuarantineEntry, check_something_to_publish
from pipeline.record.schema import RECORD_SCHEMA, SPLITS
from pipeline.stages.quality.cache_key import quality_key_part
from pipeline.stages.quality.near_dup import NearDupStage, media_flags
from pipeline.stages.quality.planner import NearDupPlan, with_media_pairs
from pipeline.stages.quality.signatures import SIGNATURE_SCHEMA
from pipeline.stages.split import SplitStage
from pipeline.store.cache import RecordCache
from pipeline.store.commit import (
    CommitCheckFailed,
    VersionCommitter,
    check_counts,
)
from pipeline.store.lock import RunLease
from pipeline.store.manifest import (
    DedupSummary,
    InputFile,
    Manifest,
    QuarantineSummary,
    ReuseSummary,
    StageCount,
    content_id,
    schema_sha256,
)
from pipeline.store.quarantine import QuarantinePart, QuarantineWriter, read_quarantine_part
from pipeline.store.read import Store
from pipeline.store.reuse import link_shard, numbered, reusable_shards
from pipeline.store.store_fs import store_fs
from pipeline.store.writer import (
    ShardWriter,
    WrittenShard,
    check_unique_ids,
    localized,
    plan_shards,
)

log = logging.getLogger(__name__)


# Ingest tasks per CPU for a source of many files (each reads a group of them).
INGEST_TASKS_PER_CPU = 2
# What an ingest is reckoned to read per record when it decides where to run (the
# benchmark corpus's jsonl holds 1.4 KB per record): bytes to parse / this = records.
INGEST_BYTES_PER_RECORD = 1024


class DataJob:
    """One run of a recipe's data job; `run()` returns the committed (or unchanged) version."""

    def __init__(
        self,
        recipe: Recipe,
        progress: RunProgress | None = None,
        run_id: str | None = None,
        rehash: bool = False,
        checked: bool = False,
    ):
        self.recipe = recipe
        self.progress = progress or NoProgress()
        self.run_id = run_id or new_run_id()
        self.fs, store_path = store_fs(recipe.store_uri, **recipe.store_options.fs_kwargs())
        self.store = Store(store_path, recipe.name, self.fs)
        self.staging = self.store.staging_dir(self.run_id)
        # Unplanned until the record plan sees the run's groups (`_plan`).
        self.splitter = SplitStage(recipe.split, recipe.seed)
        self.quarantine = QuarantineWriter(self.store.quarantine_path(self.run_id), self.fs)
        self.ledger = RunLedger([s.name for s in recipe.sources], self.quarantine)
        self.media_inputs: list[InputFile] = []  # the ingest tasks pin the media files
        # Near-duplicate signatures the ingest tasks computed (recipe `quality.near_dup`).
        self.signatures: list[pa.Table] = []
        quality = recipe.quality
        # The held-out files of `quality.decontaminate`, as the tasks open them.
        self.held_out = [recipe.resolve(p) for p in quality.decontaminate] if quality else []
        # The token ledger's counter: a handle each worker builds its processor from once.
        self.counter = None
        if quality is not None and quality.count_tokens:
            self.counter = WorkerTokenCounter(recipe.train, quality.tokenizer)
        self.cache = RecordCache(self.store.root, self.fs) if recipe.execution.cache else None
        # Input files' sha256 by their stat, from earlier runs (`PinCache`); `rehash`: every
        # input and code file is read again (and the pins kept anew).
        self.pins = pin_cache(recipe, self.store, self.fs)
        self.rehash = rehash
        # The caller found the latest version not unchanged (`unchanged.unchanged_run`).
        self.checked = checked
        # In this process until a pass is too big for it (`TaskRunner`): Ray starts then.
        self.tasks = TaskRunner(recipe.execution.in_process_records)
        self.parent: Manifest | None = None  # the latest version when the run began
        self.memos: list[str | None] = []  # per source, its ingest memo (`_memo_of`)
        self._source_files: list[list[str]] = []
        self._source_fs: Any = None  # set with the files and memos (`_plan_sources`)
        self.composition: Composition | None = (
            None  # the staged shards' card statistics (`_count_shards`)
        )
        # What the record pass made, for the cache once its rows' digests are known.
        self._made: tuple[CachedRecords, pa.Table, pa.Table, list[QuarantineEntry]] | None = None
        # The media near-duplicates planned after the pass (`media_pairs`): the NearDupPlan
        # of the records' media rows, those rows per record for the cache, and per output
        # row id the flags the shard writer adds. None: the pass signs no media.
        self.sign_media = sign_media_in_pass(recipe)
        self._pass_media: list[pa.Table] = []
        self.media_plan: NearDupPlan | None = None
        self.media_rows: pa.Table | None = None
        # Original id -> its media (code, note) flags (`media_flags`).
        self.media_found: dict[str, list[tuple[str, str]]] = {}
        self.plan: RecordPlan | None = None  # the record plan, media pairs merged after the pass
        self._ops_check: Started | None = None  # the op check running beside the ingest

    # ---- stages ----

    def _ingest(self) -> pa.Table:
        """Read every source in tasks (several for a source of many files); return the
        KEYS_SCHEMA rows of every record."""
        source_fs = self._plan_sources()
        counts = self.ledger.counts["ingest"]
        # Tasks on Ray pin the media in their own processes: they get the pins known here.
        known = {}
        if self.tasks.on_ray and self.parent is not None:
            known = stamped_pins(pin_locations(self.recipe, self.parent.inputs))
        shared = self._ingest_shared = IngestShared(
            self.recipe, self.splitter, self.fs, source_fs, known
        )
        calls: list[tuple[IngestTask, IngestShared]] = []
        # Per source: its tasks' indices in `calls`, and its file's ranges (or None).
        of_source: list[tuple[list[int], RangePlan | None]] = []
        files_of = self._source_files
        # A source of many files is read by several tasks (a group of files each), one big
        # JSON lines file by several tasks (a byte range each: `ingest_ranges`).
        tasks_per_source = max(1, self.tasks.cpus() * INGEST_TASKS_PER_CPU)
        for i, (source, files) in enumerate(zip(self.recipe.sources, files_of, strict=True)):
            # Ranges only where tasks run side by side: in this process they cost, not gain.
            pieces = tasks_per_source if self.tasks.cpus() > 1 else 1
            ranged = self._ranges_of(i, files, pieces, source_fs)
            if ranged is not None:
                reads = [{ranged.file: r} for r in ranged.ranges]
                groups = [files] * len(reads)
            else:
                per_task = max(1, -(-len(files) // tasks_per_source))
                groups = [files[j : j + per_task] for j in range(0, len(files), per_task)] or [[]]
                reads = [None] * len(groups)
            of_source.append((list(range(len(calls), len(calls) + len(groups))), ranged))
            for g, (group, lines_from) in enumerate(zip(groups, reads, strict=True)):
                task = IngestTask(
                    index=len(calls),
                    source=source,
                    files=group,
                    book_entries=g == 0,
                    folder=os.path.join(self.staging, "ingest", f"s{i}-{g}"),
                    quarantine_path=self._quarantine_part_path(f"ingest-s{i}-{g}"),
                    memo=self.memos[i] if ranged is None else None,
                    lines_from=lines_from,
                    ranged=ranged is not None,
                )
                calls.append((task, shared))
        self.progress.start("ingest", len(calls))
        resources = StageResources.for_stage(self.recipe.execution, "ingest")
        outcomes: list[IngestOutcome | None] = [None] * len(calls)
        for i, outcome in self.tasks.run(ingest_source, calls, resources):
            outcomes[i] = outcome
            self.ledger.ran_on("ingest", outcome.node)
            self.progress.advance("ingest", 1)
            self._ops_checked(if_done=True)  # a refused op ends the run now, not after
        keys = []
        # In recipe order, so the quarantine file reads the same whatever finished first.
        for source, (indices, ranged) in zip(self.recipe.sources, of_source, strict=True):
            done = [outcomes[j] for j in indices]
            entries = [self._quarantined_by(o.quarantine) for o in done if o is not None]
            if ranged is not None:
                whole = merge_ranges(ranged, done, entries, self.fs, source_fs)  # type: ignore[arg-type]
                reads = [(whole.records_in, whole.entries, whole.unmapped, whole.media)]
                read_keys, read_sigs = [whole.keys], [whole.signatures]
            else:
                reads = [
                    (o.records_in, e, o.unmapped_fields, o.media)
                    for o, e in zip(done, entries, strict=True)  # type: ignore[misc]
                ]
                read_keys = [o.keys for o in done]  # type: ignore[union-attr]
                read_sigs = [o.signatures for o in done]  # type: ignore[union-attr]
            for records_in, its, unmapped, media in reads:
                counts.records_in += records_in
                for entry in its:
                    self.ledger.quarantine("ingest", entry)
                self.ledger.unmapped_fields[source.name].update(unmapped)
                self.media_inputs.extend(media)
            for outcome in done:
                remember_pins(outcome.pins)  # type: ignore[union-attr]
            keys += read_keys
            self.signatures += [s for s in read_sigs if s is not None]
        table = pa.concat_tables(keys) if keys else KEYS_SCHEMA.empty_table()
        counts.out = table.num_rows
        self.progress.finish("ingest")
        return table

    def _ranges_of(self, i: int, files: list[str], pieces: int, source_fs: Any) -> RangePlan | None:
        """Return how the tasks read source `i`'s one file in byte ranges (`ingest_ranges`),
        None when it is read by one task (it has many files, or it is small)."""
        if len(files) != 1:
            return None
        recipe = self.recipe

        def media_hold(pins: list[dict[str, Any]]) -> bool:
            return media_pins_hold(recipe, [InputFile(**p) for p in pins], source_fs)

        return plan_ranges(
            files[0],
            recipe.sources[i].format,
            pieces,
            self.memos[i],
            self.fs,
            source_fs,
            media_hold,
        )

    def _plan_sources(self) -> Any:
        """List every source's files and find their ingest memos (once per job); choose
        where the ingest runs from the bytes it must parse; return the sources' filesystem."""
        from pipeline.readers.source_fs import SourceFS

        if self._source_fs is not None:
            return self._source_fs
        # Made here, so every task reads the sources with the driver's endpoint and keys.
        source_fs = self._source_fs = SourceFS.of(self.recipe)
        files_of = self._source_files = [source_files(s, self.recipe) for s in self.recipe.sources]
        sources = self.recipe.sources
        self.memos = [
            self._memo_of(s, f, source_fs) for s, f in zip(sources, files_of, strict=True)
        ]
        to_parse = 0
        for files, memo in zip(files_of, self.memos, strict=True):
            sizes = [source_fs.size(f) or 0 for f in files]
            # A memo stands for the first bytes of a file that only grew (the task checks).
            known = (memo_size(memo, self.fs) or 0) if memo is not None else 0
            to_parse += sum(sizes) - (known if known <= sum(sizes) else 0)
        self.tasks.choose(to_parse // INGEST_BYTES_PER_RECORD)
        return source_fs

    def _check_ops(self) -> None:
        """Check the recipe's augment ops (`check_recipe_ops`) where the record pass will
        run them: in a Ray task when the job runs on Ray, so the driver never imports the
        op libraries (seconds of CPU: torch, scipy), in this process otherwise.

        On Ray the check runs beside the ingest, and `_ops_checked` awaits it before the
        record pass. Awaited first, it held the job ~0.9 s at its start with one of 2 CPUs
        idle (the worker importing the op libraries, which it then keeps for the pass):
        0.9 s of a 400-record job's 5.2 s on a fresh Ray session (4.8 s beside the ingest).
        A failed check stops the ingest at its next finished task, and nothing of the run
        is published."""
        self._plan_sources()
        if self.recipe._ops_checked or not self.tasks.on_ray:
            check_recipe_ops(self.recipe)
            return
        resources = StageResources.for_stage(self.recipe.execution, "augment", "validate")
        self._ops_check = self.tasks.start(check_ops, (self.recipe,), resources)

    def _ops_checked(self, if_done: bool = False) -> None:
        """Raise the op check's error (`_check_ops`) once it failed; wait for it unless
        `if_done` (then only a finished check is looked at)."""
        check = self._ops_check
        if check is None or (if_done and not check.done()):
            return
        check.result()  # raises what the check raised: RecipeError naming the op
        self._ops_check = None
        self.recipe._ops_checked = True

    def _memo_of(self, source: SourceConfig, files: list[str], source_fs: Any) -> str | None:
        """Return where the ingest memo of a source that is one file lies (`ingest_memo`),
        None when there is none to keep (the cache is off, or the source has many files)."""
        if self.cache is None or len(files) != 1:
            return None
        recipe = self.recipe
        quality = recipe.quality
        book = [*source.characters_files, *([source.persona] if source.persona else [])]
        parts = {
            "file": files[0],
            "base_dir": recipe.base_dir,
            "source": source.model_dump(mode="json"),
            "limits": recipe.limits.model_dump(mode="json"),
            "split": recipe.split.model_dump(mode="json"),
            "near_dup": (
                quality.near_dup.model_dump(mode="json")
                if quality is not None and quality.near_dup.enabled
                else None
            ),
            # Whether the memo's signatures hold media rows (`signs_media_at_ingest`): a
            # text-only memo never stands for the ingest of a run that groups media.
            "media_signatures": self.sign_media is None,
            "code": code_version().identity(),
            "characters": [pinned_file(recipe.resolve(p), source_fs)[0] for p in book],
        }
        return os.path.join(self.cache.memo_dir, f"{memo_key(parts)}.parquet")

    def _located(self, misses: pa.Table) -> pa.Table:
        """Return `misses` with every record an ingest memo stood for (part null: only its
        keys were kept) read back alone, by its line, into a part of this run."""
        lost = misses.filter(pc.is_null(misses["part"]))
        if lost.num_rows == 0:
            return misses
        calls = []
        for i, source in enumerate(self.recipe.sources):
            refs = lost.filter(pc.equal(lost["source"], source.name))["source_ref"].to_pylist()
            memo = load_memo(self.memos[i], self.fs) if refs and self.memos[i] else None
            if memo is None:
                continue
            file = self._source_files[i][0]
            lines = frozenset(int(r.rsplit(":", 1)[1].split(".")[0]) for r in refs)
            task = IngestTask(
                index=len(calls),
                source=source,
                files=[file],
                book_entries=False,
                folder=os.path.join(self.staging, "ingest", f"s{i}-lines"),
                quarantine_path=self._quarantine_part_path(f"ingest-s{i}-lines"),
                lines_from={file: LinesFrom(detected=memo.detected, only=lines)},
            )
            calls.append((task, self._ingest_shared))
        self.tasks.choose(lost.num_rows)
        resources = StageResources.for_stage(self.recipe.execution, "ingest")
        found = [KEYS_SCHEMA.empty_table()]
        for _, outcome in self.tasks.run(ingest_source, calls, resources):
            self.ledger.ran_on("ingest", outcome.node)
            found.append(outcome.keys)
        where = pa.concat_tables(found).select(["id", "part", "row"])
        located = lost.drop_columns(["part", "row"]).join(where, "id", join_type="inner")
        if located.num_rows != lost.num_rows:
            raise CommitCheckFailed(
                f"{lost.num_rows - located.num_rows} record(s) of an ingest memo were not "
                "found again in their source; delete the cache's ingest/ folder and rerun"
            )
        kept = misses.filter(pc.is_valid(misses["part"]))
        return pa.concat_tables([kept, located.select(misses.column_names).cast(misses.schema)])

    def _quarantine_part_path(self, name: str) -> str:
        return os.path.join(self.staging, "quarantine", f"{name}.jsonl")

    def _quarantined_by(self, part: QuarantinePart | None) -> list[QuarantineEntry]:
        """Return the entries of a task's quarantine part (none when it rejected nothing)."""
        return read_quarantine_part(part, self.fs) if part is not None else []

    def _record_pass(
        self, todo: pa.Table, skip_ids: pa.Array, plan: RecordPlan
    ) -> tuple[pa.Table, list[QuarantineEntry]]:
        """Run the recipe's stages (`build_stages`, with the plan's split and near-duplicate
        plan) over the records
        of `todo` (KEYS_SCHEMA, plus `ckey` when the cache is on; rows of their parts in
        `skip_ids` are left alone); return the ROWS_SCHEMA rows of what the tasks wrote and
        their quarantine entries, in task order."""
        resources = StageResources.for_stage(self.recipe.execution, "augment", "validate")
        self.progress.start("records", todo.num_rows)
        if todo.num_rows == 0:
            # Nothing to compute: no stage is built (an augmenter's ops import libraries);
            # the ledger still needs the quality stages' order to count the cache hits.
            self.ledger.pass_order = quality_stage_names(
                self.recipe, plan.near_dup, self.held_out, self.counter
            )
            self.progress.finish("records")
            return ROWS_SCHEMA.empty_table(), []
        stages = build_stages(self.recipe, plan.split, plan.near_dup, self.held_out, self.counter)
        self.ledger.pass_order = [stage.name for stage in stages]
        self.tasks.choose(todo.num_rows)
        context = self.tasks.share(
            PassContext(
                fs=self.fs,
                stages=stages,
                skip_ids=skip_ids,
                batch_size=resources.batch_size,
                quality_column=self.recipe.quality is not None,
                task_cpus=resources.num_cpus,
                sign_media=self.sign_media,
            )
        )
        per_task = slice_rows(todo.num_rows, self.tasks.cpus(), resources.batch_size)
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
        for i, outcome in self.tasks.run(record_pass, calls, resources):
            self.ledger.ran_on("records", outcome.node)
            rows.append(outcome.rows)
            parts.append((i, outcome.quarantine))
            self.ledger.stats.merge(outcome.stats)
            self.ledger.add_pass(outcome.tallies)
            if outcome.signatures is not None:
                self._pass_media.append(outcome.signatures)
            self.progress.advance("records", outcome.records_in)
        self.progress.finish("records")
        # The shard tasks need none of what the pass left in the workers: fresh ones.
        if self.recipe.execution.fresh_write_workers:
            self.tasks.retire_workers()
        # In task order, so the quarantine file reads the same whatever finished first.
        entries = [
            e for _, part in sorted(parts, key=lambda p: p[0]) for e in self._quarantined_by(part)
        ]
        self.ledger.check_pass(len(entries))
        return (pa.concat_tables(rows) if rows else ROWS_SCHEMA.empty_table()), entries

    def _records(self, plan: RecordPlan) -> tuple[pa.Table, list[QuarantineEntry]]:
        """Return the rows and rejects of every non-duplicate record: from the cache where
        its key hits, from the record pass otherwise."""
        todo, duplicate_ids = plan.todo, plan.duplicate_ids
        if self.cache is None:
            rows, entries = self._record_pass(todo, duplicate_ids, plan)
            self._plan_media(rows, entries, None)
            self.ledger.reuse = RecordReuse(reused=0, computed=todo.num_rows, basis="no cache")
            return rows, entries
        cached = CachedRecords(self.recipe, self.cache, self.run_id, self.ledger, self.tasks)
        todo = cached.keyed(todo, plan.split, self._quality_key_parts(todo, plan))
        misses, hits, stale = self.cache.lookup(
            todo, self.recipe.recipe_hash, need_media=self.sign_media is not None
        )
        misses = self._located(misses)
        hit_ids = todo["id"].filter(pc.invert(pc.is_in(todo["id"], value_set=misses["id"])))
        skip = pa.concat_arrays([duplicate_ids, hit_ids.combine_chunks().cast(pa.string())])
        rows, entries = self._record_pass(misses, skip, plan)
        reused, rebased, reused_entries = cached.reused(hits, stale)
        plan = self._plan_media(rows, entries, pa.concat_tables([hits, stale]))
        if self.sign_media is not None:
            # A cached row digest holds for the media flags it was written with only.
            reused = cached.unflagged(reused, hits, row_flags(self.media_found, reused))
        if self.recipe.quality is not None:
            self.ledger.cached_quality = self._cached_quality(
                pa.concat_tables([reused, rebased]), reused_entries, plan
            )
        self._made = (cached, todo, pa.concat_tables([rows, rebased]), entries)
        self.ledger.reuse = RecordReuse(
            reused=todo.num_rows - misses.num_rows, computed=misses.num_rows, basis="record cache"
        )
        return pa.concat_tables([rows, reused, rebased]), entries + reused_entries

    def _plan_media(
        self, rows: pa.Table, entries: list[QuarantineEntry], cached: pa.Table | None
    ) -> RecordPlan:
        """Plan the media near-duplicates after the pass (`media_pairs`), over the media
        rows the pass signed and those the cache kept of its hits (`cached` index rows);
        count what the pass's near-duplicate stage could not; return the record plan with
        the media pairs merged into its near-duplicate plan."""
        plan = self.plan
        assert plan is not None
        if self.sign_media is None or plan.near_dup is None:
            return plan
        signed = (
            pa.concat_tables(self._pass_media)
            if self._pass_media
            else SIGNATURE_SCHEMA.empty_table()
        )
        kept = SIGNATURE_SCHEMA.empty_table()
        if cached is not None:
            kept = media_of_index(cached, self.sign_media)
        self.media_rows = pa.concat_tables([signed, kept])
        self.media_plan = plan_media(self.media_rows, self.sign_media)
        count_pass_media(
            self.ledger.pass_stages, self.ledger.pass_order, self.media_plan, signed, entries
        )
        self.media_found = media_flags(self.media_plan)
        self.plan = replace(plan, near_dup=with_media_pairs(plan.near_dup, self.media_plan))
        return self.plan

    def _cached_quality(
        self, rows: pa.Table, entries: list[QuarantineEntry], plan: RecordPlan
    ) -> dict[str, StageTally]:
        """Return what the quality stages would have counted over the cache's rows and
        rejections (`cached_quality_tallies`), with this run's near-duplicate plan."""
        near = None
        quality = self.recipe.quality
        if plan.near_dup is not None and quality is not None and quality.near_dup.enabled:
            near = NearDupStage(plan.near_dup, quality.near_dup.group_media)
        return cached_quality_tallies(self.ledger.pass_order, rows, entries, self.fs, near)

    def _quality_key_parts(self, todo: pa.Table, plan: RecordPlan) -> list[str | None] | None:
        """Return per record of `todo` the quality part of its cache key (None: quality off):
        the settings, the held-out files' sha256, the processor's hash and what the
        near-duplicate plan says about the record (`quality_key_part`)."""
        quality = self.recipe.quality
        if quality is None:
            return None
        held = held_out_sha256(self.recipe)
        processor = self.counter.processor_hash if self.counter is not None else None
        near = plan.near_dup

        def part(record_id: str) -> str | None:
            return quality_key_part(quality, record_id, near, held, processor)

        if near is None:
            same = part("")
            return [same] * todo.num_rows
        # Only records the plan names need a key of their own; the others share one.
        named = set(near.clusters) | set(near.drop) | set(near.greetings)
        named |= set(near.pairs["a"].to_pylist()) | set(near.pairs["b"].to_pylist())
        alone = part("")
        return [part(i) if i in named else alone for i in todo["id"].to_pylist()]

    def _write(self, rows: pa.Table) -> list[WrittenShard]:
        """Take the parent's shards whose rows are all unchanged (`store/reuse.py`); plan
        new shards from the other rows' facts and write each in its own task."""
        counts = self.ledger.counts["write"]
        counts.records_in = rows.num_rows
        index, paths = writer_index(rows)
        check_unique_ids(index)
        writer = ShardWriter(
            os.path.join(self.staging, "version"),
            self.recipe.output.format,
            parse_size(self.recipe.output.shard_size),  # defaults skip the validator
            self.fs,
        )
        parent_dir = self.store.version_dir(self.parent.number) if self.parent else ""
        reusable = reusable_shards(
            self.parent,
            parent_dir,
            rows.select(["id", "row_sha256"]),
            writer.fmt,
            schema_sha256(RECORD_SCHEMA),
            self.fs,
        )
        if reusable:
            taken = pa.concat_tables([r.rows for r in reusable])["id"]
            index = index.filter(pc.invert(pc.is_in(index["id"], value_set=taken)))
        self.tasks.choose(index.num_rows)
        names, plans = numbered(
            # `index` is a subset of the rows whose ids were checked above.
            reusable,
            plan_shards(
                index, writer.fmt, writer.shard_size, ids_checked=True, cpus=self.tasks.cpus()
            ),
            writer.fmt,
        )
        # The media near-duplicates planned after the pass reach the rows as they are written.
        flags = row_flags(self.media_found, rows)
        plans = [p.flagged(flags) for p in plans]
        self.progress.start("write", rows.num_rows)
        self.fs.makedirs(writer.folder)
        linked = [
            WrittenShard(link_shard(r, name, parent_dir, writer.folder, self.fs), r.rows)
            for r, name in zip(reusable, names, strict=True)
        ]
        self.progress.advance("write", sum(s.entry.rows for s in linked))
        shared = self.tasks.share(writer)
        calls = [(*localized(plan, paths), shared) for plan in plans]
        resources = StageResources.for_stage(self.recipe.execution, "write")
        shards: list[WrittenShard | None] = [None] * len(plans)
        for i, outcome in self.tasks.run(write_shard, calls, resources):
            shards[i] = outcome.written
            self.ledger.ran_on("write", outcome.node)
            self.progress.advance("write", outcome.written.entry.rows)
        # Durable at the commit, in one pass over the staged files (`fs.sync_tree`).
        written = linked + [s for s in shards if s is not None]
        counts.out = sum(s.entry.rows for s in written)
        self.progress.finish("write")
        return written

    def _remember(self, shards: list[WrittenShard]) -> None:
        """Add what the record pass made to the cache, each row with its digest where a
        shard of this run holds it (a rerun then reuses the shards of such rows)."""
        if self._made is None:
            return
        cached, todo, made, entries = self._made
        self._made = None
        digests = pa.concat_tables([s.rows for s in shards]) if shards else None
        if digests is not None and made.num_rows:
            made = made.drop_columns(["row_sha256"]).join(digests, "id", join_type="left outer")
        media = None
        if self.sign_media is not None:
            media = self._media_kept(todo, made, entries)
        cached.remember(todo, made, entries, media)

    def _media_kept(
        self, todo: pa.Table, made: pa.Table, entries: list[QuarantineEntry]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Return what the cache keeps of the media near-duplicates of what the pass made:
        per record its media signature rows ([]: none), and per row the digest of the media
        flags the writer added to it."""
        ids = set(made["id"].to_pylist()) | {e.record_id for e in entries if e.record_id}
        signed = self.media_rows if self.media_rows is not None else SIGNATURE_SCHEMA.empty_table()
        # Rebased hits were not signed again: their rows are those the cache's index kept.
        media = media_texts(signed, sorted(ids & set(todo["id"].to_pylist())))
        flags = row_flags(self.media_found, made)
        ids_made = made["id"].to_pylist()
        return media, dict(zip(ids_made, flags_digests(flags, ids_made), strict=True))

    # ---- the job ----

    def _manifest(
        self, inputs: list[InputFile], shards: list[WrittenShard], plan: RecordPlan
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
            shards=[s.entry for s in shards],
            quality=ledger.quality_counts() if self.recipe.quality is not None else None,
            schema_sha256=schema_hash,
            content_id=content_id(schema_hash, [s.rows for s in shards]),
        )

    def run(self) -> RunResult:
        """Run every stage and commit; raise TooManyBadRecords, CommitCheckFailed,
        RecipeError (missing sources) or InjectedFault (tests) without publishing."""
        import time

        started = time.perf_counter()
        check_source_paths(self.recipe)
        check_writable(self.recipe, self.store, self.fs)
        if self.checked:
            latest = self.store.latest_manifest()
        else:
            latest, unchanged = find_unchanged(
                self.recipe, self.store, self.fs, self.run_id, self.rehash
            )
            if unchanged is not None:
                unchanged.seconds = time.perf_counter() - started
                return unchanged
        self.parent = latest
        # Only now the op libraries (`roleforge run` loads without them), and not when the
        # latest version was made under this recipe hash and code: its ops passed then, and
        # a rerun with a few misses then imports only what those records need.
        if not same_recipe_and_code(self.recipe, latest):
            self._check_ops()
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
        if self.pins is not None:
            self.pins.save(pin_locations(self.recipe, manifest.inputs))
        result.seconds = time.perf_counter() - started
        return result

    def _stages(self) -> Manifest:
        """Run the data job into staging, room by room: ingest -> plan -> record pass ->
        shards; return the staged manifest."""
        ledger = self.ledger
        try:
            keys = self._ingest()
            inputs = pinned_inputs(self.recipe, self.media_inputs)
            ledger.check_bad_fraction(self.recipe.max_bad_fraction)
            quality = self.recipe.quality
            plan = plan_records(
                keys,
                self.splitter,
                pa.concat_tables(self.signatures) if self.signatures else None,
                quality.near_dup if quality is not None else None,
            )
            self.plan = plan
            self._ops_checked()
            rows, entries = self._records(plan)
            plan = self.plan  # with the media pairs planned after the pass
            shards: list[WrittenShard] = []
            try:
                for entry in entries:
                    ledger.quarantine("validate", entry)
                ledger.settle(plan, rows, {e.record_id: e.reason for e in entries if e.record_id})
                ledger.check_bad_fraction(self.recipe.max_bad_fraction)
                check_something_to_publish(
                    rows.num_rows,
                    ledger.counts["ingest"].records_in,
                    ledger.reasons,
                    self.quarantine.path,
                )
                shards = self._write(rows)
            finally:
                # What the pass made is kept whether or not this version is published.
                self._remember(shards)
        except BaseException:
            # The first error is the one to report: closing the quarantine file on a full
            # disk would raise a second one and mask it.
            self.quarantine.close(quiet=True)
            raise
        self.quarantine.close()
        self.composition = self._count_shards(shards)
        check_counts(ledger.counts_dict())
        if sum(ledger.rows.values()) != ledger.counts["write"].out:
            raise CommitCheckFailed("rows per split do not add up to the rows written")
        return self._manifest(inputs, shards, plan)

    def _count_shards(self, shards: list[WrittenShard]) -> Composition:
        """Return the cards' composition statistics of the staged shards, counted by one
        task per shard and merged in shard order (the driver reads no row for its cards)."""
        folder = os.path.join(self.staging, "version")
        calls = [(folder, s.entry, self.fs) for s in shards]
        counted: list[Any] = [None] * len(calls)
        resources = StageResources.for_stage(self.recipe.execution, "write")
        for i, outcome in self.tasks.run(count_shard, calls, resources):
            counted[i] = outcome.composition
        composition = Composition()
        for part in counted:
            composition.merge(part)
        return composition

    def _commit(self, manifest: Manifest) -> RunResult:
        from pipeline.cards.write import write_cards
        from pipeline.store.diff import summarize_against_parent

        committer = VersionCommitter(
            self.store,
            self.fs,
            write_cards=functools.partial(write_cards, composition=self.composition),
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
            quality=manifest.quality,
        )


def run_recipe(
    recipe: Recipe,
    progress: RunProgress | None = None,
    rehash: bool = False,
    checked: bool = False,
) -> RunResult:
    """Return the result of running a recipe's data job (training is `train_result`'s job);
    `rehash`: read every input file again instead of trusting pins by their stat;
    `checked`: the caller found the latest version not unchanged (`unchanged_run`)."""
    return DataJob(recipe, progress, rehash=rehash, checked=checked).run()


def train_result(recipe: Recipe, result: RunResult) -> RunResult:
    """Fine-tune on the version `result` names, per the recipe's `train:`; attach the outcome."""
    from trainers import train_version

    trained = train_version(
        recipe.store_uri, recipe.name, result.version, recipe.train, recipe.seed
    )
    result.train = trained.to_dict()
    return result
