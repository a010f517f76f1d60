"""`roleforge run`: the data job of one recipe, from sources to a committed version.

ingest -> validate -> dedup -> split -> augment -> write -> commit.

How records move (measured choices, see PERF_NOTES.md):
- The driver reads every source (JSON + media bytes: IO, not CPU) and appends it to Arrow
  IPC part files in `_staging/<run_id>/ingest/`, a few MB at a time. It never holds the
  corpus, and Ray gets only a list of (part, offset, length) work items: `from_items` of the
  records themselves, or `from_arrow` of every table, would materialize the whole corpus in
  the driver or the object store, and `read_parquet` packed many files into one task.
- Pass one (Ray tasks): validate, and compute each record's exact-duplicate key.
- The driver finds duplicates on the small (id, key, group) table: keep the smallest id per
  key; then it ranks the surviving split groups by hash and fixes the two cut points.
- Pass two (Ray tasks): drop duplicates, assign splits by those cuts, augment train records.
- Each pass's results stream back to the driver, which appends records to the next part
  files, quarantine entries to the quarantine file, and (split, id, part, row) to an index.
- The writer takes rows from the memory-mapped parts in id order into the shards.
Peak memory is one chunk per stage plus the small per-record index, whatever the corpus size.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from augmenters.stats import AugmentStats
from pipeline.execution.cluster import (
    StageResources,
    cluster_cpus,
    configure_data_context,
    ensure_ray,
    map_work_items,
    work_items,
)
from pipeline.execution.passes import DEDUP_KEY_COLUMN, SIDE_COLUMN, augment_parts, validate_parts
from pipeline.execution.provenance import (
    augmentation_summary,
    code_version,
    input_entries,
    unchanged_inputs,
)
from pipeline.recipe import Recipe, parse_size
from pipeline.record.ids import new_run_id
from pipeline.record.rejection import QuarantineEntry, TooManyBadRecords, check_bad_fraction
from pipeline.record.schema import RECORD_SCHEMA, SPLITS, WORK_SCHEMA, records_to_table
from pipeline.stages.dedup import DedupStage
from pipeline.stages.split import SplitStage
from pipeline.store.commit import (
    STAGES,
    CommitCheckFailed,
    VersionCommitter,
    card_metadata,
    check_counts,
    content_id,
    schema_sha256,
)
from pipeline.store.fs import store_fs
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
from pipeline.store.staging import PartSet, PartWriter, row_nbytes
from pipeline.store.writer import INDEX_SCHEMA, ShardWriter, part_index

log = logging.getLogger(__name__)

# Part files: big enough that per-file overhead vanishes, small enough to mmap cheaply.
PART_TARGET_BYTES = 16 * 1024 * 1024
PART_MAX_ROWS = 4096
# The driver buffers at most this much of a source before handing it to a part file.
INGEST_CHUNK_ROWS = 256
INGEST_CHUNK_BYTES = 8 * 1024 * 1024


def _detached(data: Any) -> Any:
    """Return a copy of a table or column in fresh memory.

    A block that Ray hands back lives in the object store, and any column kept from it
    (even a small id column) pins the whole block, media included, until the run ends.
    """
    return data.take(pa.array(np.arange(len(data)), pa.int64()))


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

    Both count the original records that entered the record pass (validate's `in`): a run
    without the per-record cache computes all of them; an unchanged rerun found before any
    work reuses all of its version's. The cache sets `DataJob.reuse`; `basis` says how the
    two were counted.
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
        self.fs, store_path = store_fs(recipe.store_uri)
        self.store = Store(store_path, recipe.name)
        self.staging = self.store.staging_dir(self.run_id)
        self.counts = {name: StageCounts() for name in STAGES}
        self.reasons: Counter[str] = Counter()
        self.stats = AugmentStats()
        self.originals: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()
        self.splitter = SplitStage(recipe.split, recipe.seed)
        self.quarantine = QuarantineWriter(self.store.quarantine_path(self.run_id))
        self.unmapped_fields: dict[str, Counter[str]] = {s.name: Counter() for s in recipe.sources}
        # The per-record cache's counts, set by the cache when it runs (before `_manifest`);
        # None: every original that entered the record pass was computed.
        self.reuse: RecordReuse | None = None

    # ---- stages ----

    def _ingest(self) -> tuple[list[tuple[str, int]], int]:
        from pipeline.readers import SourceReadStats, read_source

        counts = self.counts["ingest"]
        self.progress.start("ingest", None)
        with PartWriter(
            os.path.join(self.staging, "ingest"), WORK_SCHEMA, PART_TARGET_BYTES, PART_MAX_ROWS
        ) as parts:
            chunk: list[dict[str, Any]] = []
            chunk_bytes = 0
            for source in self.recipe.sources:
                stats = SourceReadStats(unmapped_fields=self.unmapped_fields[source.name])
                for item in read_source(source, self.recipe, stats):
                    counts.records_in += 1
                    if isinstance(item, QuarantineEntry):
                        self._quarantine(counts, item)
                        continue
                    chunk.append(item)
                    chunk_bytes += sum(
                        len(m["bytes"] or b"") for m in item["images"] + item["audios"]
                    )
                    if len(chunk) >= INGEST_CHUNK_ROWS or chunk_bytes >= INGEST_CHUNK_BYTES:
                        self._ingest_chunk(parts, chunk)
                        chunk, chunk_bytes = [], 0
            self._ingest_chunk(parts, chunk)
        counts.out = parts.rows_written
        self.progress.finish("ingest")
        return parts.sizes(), parts.rows_written

    def _ingest_chunk(self, parts: PartWriter, chunk: list[dict[str, Any]]) -> None:
        if chunk:
            parts.write(records_to_table(chunk, WORK_SCHEMA))
            self.progress.advance("ingest", len(chunk))

    def _quarantine(self, counts: StageCounts, entry: QuarantineEntry) -> None:
        self.quarantine.write(entry)
        self.reasons[entry.reason] += 1
        counts.quarantined += 1

    def _side_messages(self, table: pa.Table, counts: StageCounts) -> pa.Table:
        """Route a pass's side rows (quarantine entries, stats); return the records only."""
        side = table[SIDE_COLUMN]
        has_side = pc.is_valid(side)
        if pc.any(has_side).as_py():
            for text in side.filter(has_side).to_pylist():
                message = json.loads(text)
                if "quarantine" in message:
                    self._quarantine(counts, QuarantineEntry(**message["quarantine"]))
                elif "stats" in message:
                    self.stats.merge(AugmentStats.from_dict(message["stats"]))
            table = table.filter(pc.invert(has_side))
        return table

    def _run_pass(
        self,
        stage: str,
        parts: list[tuple[str, int]],
        rows: int,
        fn: Any,
        fn_kwargs: dict[str, Any],
    ):
        resources = StageResources.for_stage(self.recipe.execution, stage)
        cpus = cluster_cpus()
        items = work_items(parts, rows, cpus, resources.batch_size)
        fn_kwargs = {**fn_kwargs, "batch_size": resources.batch_size}
        yield from map_work_items(items, fn, fn_kwargs, resources, cpus)

    def _validate(
        self, parts: list[tuple[str, int]], rows: int
    ) -> tuple[list[tuple[str, int]], pa.Table]:
        counts = self.counts["validate"]
        counts.records_in = rows
        self.progress.start("validate", rows)
        keys = []
        with PartWriter(
            os.path.join(self.staging, "validated"), WORK_SCHEMA, PART_TARGET_BYTES, PART_MAX_ROWS
        ) as out:
            limits = self.recipe.limits.model_dump()
            for table in self._run_pass(
                "validate", parts, rows, validate_parts, {"limits": limits}
            ):
                before = counts.quarantined
                records = self._side_messages(table, counts)
                out.write(records)
                key_table = records.select(["id", DEDUP_KEY_COLUMN]).rename_columns(["id", "key"])
                # The split groups (conversation or character) travel with the keys, so the
                # driver can cut the splits by count over the records that survive dedup.
                groups = pa.array(self.splitter.group_keys(records), pa.string())
                keys.append(_detached(key_table.append_column("group", groups)))
                counts.out += records.num_rows
                self.progress.advance("validate", records.num_rows + counts.quarantined - before)
        self.progress.finish("validate")
        index = (
            pa.concat_tables(keys)
            if keys
            else pa.table({name: pa.array([], pa.string()) for name in ("id", "key", "group")})
        )
        return out.sizes(), index

    def _dedup_and_split_counts(self, validated: int, duplicates: int) -> None:
        dedup = self.counts["dedup"]
        dedup.records_in = validated
        dedup.dropped = duplicates
        dedup.out = validated - duplicates
        split = self.counts["split"]
        split.records_in = split.out = dedup.out

    def _augment(
        self, parts: list[tuple[str, int]], rows: int, duplicate_ids: pa.Array
    ) -> tuple[PartSet, pa.Table]:
        counts = self.counts["augment"]
        counts.records_in = self.counts["split"].out
        variants = 0
        self.progress.start("augment", counts.records_in)
        augmenter = None
        if self.recipe.augment.copies > 0:
            from augmenters import RecordAugmenter

            augmenter = RecordAugmenter(
                self.recipe.augment, self.recipe.seed, self.recipe.recipe_hash
            )
        fn_kwargs = {
            "duplicate_ids": duplicate_ids,
            "splitter": self.splitter,
            "augmenter": augmenter,
        }
        index = []
        with PartWriter(
            os.path.join(self.staging, "augmented"), WORK_SCHEMA, PART_TARGET_BYTES, PART_MAX_ROWS
        ) as out:
            for table in self._run_pass("augment", parts, rows, augment_parts, fn_kwargs):
                before = counts.quarantined
                records = self._side_messages(table, counts)
                where = out.write(records)
                if where is None:
                    self.progress.advance("augment", counts.quarantined - before)
                    continue
                is_variant = pc.is_valid(records["parent_id"])
                n_variants = int(pc.sum(is_variant).as_py() or 0)
                originals = records.filter(pc.invert(is_variant))
                self.originals.update(originals["split"].to_pylist())
                self.rows.update(records["split"].to_pylist())
                variants += n_variants
                counts.out += records.num_rows - n_variants
                # Detached columns: the index must not pin the Ray block with its media.
                index.append(
                    part_index(
                        _detached(records["split"]),
                        _detached(records["id"]),
                        where,
                        row_nbytes(records),
                    )
                )
                self.progress.advance(
                    "augment", records.num_rows - n_variants + counts.quarantined - before
                )
        counts.extra = {
            "variants": variants,
            "empty_variants": self.stats.empty_variants,
        }
        self.progress.finish("augment")
        table = pa.concat_tables(index) if index else INDEX_SCHEMA.empty_table()
        return PartSet(out.paths), table

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

    def _write(self, parts: PartSet, index: pa.Table) -> list[ShardEntry]:
        counts = self.counts["write"]
        counts.records_in = index.num_rows
        self.progress.start("write", index.num_rows)
        writer = ShardWriter(
            os.path.join(self.staging, "version"),
            self.recipe.output.format,
            parse_size(self.recipe.output.shard_size),  # defaults skip the validator
            self.fs,
        )
        shards = writer.write(index, parts)
        counts.out = sum(s.rows for s in shards)
        self.progress.advance("write", counts.out)
        self.progress.finish("write")
        return shards

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
        # The lease, taken before the run's first file, tells `gc` this run is alive.
        with RunLease(self.store.root, self.run_id):
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
        self.fs.check_writable(
            os.path.join(self.recipe.resolve(self.recipe.cards_dir), self.recipe.name)
        )

    def _stages(self) -> Manifest:
        """Run the stages from ingest to write, into staging; return the staged manifest."""
        inputs = input_entries(self.recipe)
        try:
            ingested, rows = self._ingest()
            ensure_ray()
            configure_data_context()
            validated, keys = self._validate(ingested, rows)
            self._check_bad_fraction()
            duplicate_ids = DedupStage.duplicate_ids(keys)
            self._dedup_and_split_counts(keys.num_rows, len(duplicate_ids))
            kept = pc.invert(pc.is_in(keys["id"], value_set=duplicate_ids))
            self.splitter = self.splitter.planned(keys["group"].filter(kept).to_pylist())
            parts, index = self._augment(validated, keys.num_rows, duplicate_ids)
            self._check_bad_fraction()
            shards = self._write(parts, index)
        except BaseException:
            # The first error is the one to report: closing the quarantine file on a full
            # disk would raise a second one and mask it.
            self.quarantine.close(quiet=True)
            raise
        self.quarantine.close()
        check_counts({name: c.to_dict() for name, c in self.counts.items()})
        if sum(self.rows.values()) != self.counts["write"].out:
            raise CommitCheckFailed("rows per split do not add up to the rows written")
        return self._manifest(inputs, shards, len(duplicate_ids))

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
        )

    def _record_reuse(self) -> RecordReuse:
        """Return the cache's counts, or (no cache ran) every original computed."""
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

    store_path = store_fs(recipe.store_uri)[1]
    trained = train_version(store_path, recipe.name, result.version, recipe.train, recipe.seed)
    result.train = trained.to_dict()
    return result
