"""The work of the data job's Ray tasks: ingest one source, run the record pass over slices
of the ingested parts, write one shard.

Tasks write, the driver commits small facts (docs/ARCHITECTURE.md, "The data flow"): every
task writes its own part files and quarantine part through the store's filesystem and
returns only what the driver needs to decide and to commit: per record an id, keys and
sizes, per task its counts per stage and per reason. No media byte travels back to the
driver or through Ray's object store. Each task takes one typed input (and the run's shared
context) and returns one typed outcome.

File names depend only on the task's input (the source, or the first slice of the task),
so a task that fails and is retried overwrites its own half-written files and nothing is
written twice; and the driver builds everything it publishes from the returned facts,
ordered by what they are (ids, part paths), not by when they came, so results arriving in
any order make the same version.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from augmenters.stats import AugmentStats
from pipeline.cards.composition import shard_composition
from pipeline.execution.ingest_memo import IngestMemo, MemoRead
from pipeline.execution.provenance import (
    media_entries,
    media_pins_hold,
    remember_pins,
    stamped_pins,
)
from pipeline.recipe import Recipe, SourceConfig, check_recipe_ops
from pipeline.record.ids import canonical_json, media_digests
from pipeline.record.location import abspath
from pipeline.record.rejection import QuarantineEntry
from pipeline.record.schema import WORK_SCHEMA, records_to_table
from pipeline.stages.augment import AugmentStage
from pipeline.stages.base import BatchContext, Stage, StageOutput
from pipeline.stages.dedup import DedupStage
from pipeline.stages.quality.column import add_flags
from pipeline.stages.quality.signatures import (
    SIGNATURE_SCHEMA,
    media_signatures,
    near_dup_signatures,
)
from pipeline.stages.quality.stages import quality_stages, token_ledger_stage
from pipeline.stages.split import SplitStage
from pipeline.stages.validate import ValidateStage
from pipeline.store.manifest import InputFile
from pipeline.store.quarantine import QuarantinePart, write_quarantine_part
from pipeline.store.staging import PartSet, PartWriter, read_part, row_nbytes
from pipeline.store.writer import ShardPlan, ShardWriter, WrittenShard

# Part files: big enough that per-file overhead vanishes, small enough to map cheaply.
PART_TARGET_BYTES = 16 * 1024 * 1024
PART_MAX_ROWS = 4096
# An ingest task buffers at most this much of a source before appending it to a part.
INGEST_CHUNK_ROWS = 256
INGEST_CHUNK_BYTES = 8 * 1024 * 1024

# What an ingest task returns per record: the facts the driver decides dedup, the split
# plan and cache hits on, and where the record lies. These are the ingest keys: a key that
# must be computed from a record's bytes (a near-duplicate signature) is added here and in
# `ingest_keys`, and read by the driver's plan (`pipeline.execution.plan`).
KEYS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("key", pa.string()),  # exact-duplicate key (normalized turns + media bytes)
        ("group", pa.string()),  # split group
        ("point", pa.uint64()),  # the group's point on the split line (`SplitStage.point`)
        ("content", pa.string()),  # sha256 of the whole record as read, media included
        ("images", pa.int32()),
        ("audios", pa.int32()),
        ("source", pa.string()),
        ("source_ref", pa.string()),
        ("part", pa.string()),
        ("row", pa.int64()),
    ]
)
# What a record-pass task returns per output row (originals and variants).
ROWS_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("id", pa.string()),
        ("parent_id", pa.string()),
        ("part", pa.string()),
        ("row", pa.int64()),
        ("nbytes", pa.int64()),
        ("stats", pa.string()),  # an augmented original's AugmentStats JSON (for the cache)
        # The row's digest as a shard holds it, when known before writing (a cache hit's,
        # from the run that wrote it): a parent's shard of such rows is reused, not rewritten.
        ("row_sha256", pa.string()),
    ]
)


def content_hashes(
    table: pa.Table, digests: tuple[list[list[str]], list[list[str]]] | None = None
) -> list[str]:
    """Return per WORK row the sha256 of every field, media by the sha256 of their bytes
    (`digests`: the (images, audios) `media_digests` of `table`, when already known)."""
    images, audios = digests or (media_digests(table["images"]), media_digests(table["audios"]))
    paths = {c: _media_paths(table[c]) for c in ("images", "audios")}
    light = table.drop_columns(["images", "audios"]).to_pylist()
    out = []
    for i, row in enumerate(light):
        row["images"] = [images[i], paths["images"][i]]
        row["audios"] = [audios[i], paths["audios"][i]]
        out.append(hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest())
    return out


def _media_paths(column: pa.ChunkedArray) -> list[list[str | None]]:
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values = array.flatten().field("path").to_pylist()
    offsets = array.offsets.to_numpy(zero_copy_only=False) - array.offsets[0].as_py()
    return [values[offsets[r] : offsets[r + 1]] for r in range(len(array))]


# ---- ingest: one task per source, or per group of its files ----


@dataclass(frozen=True)
class IngestShared:
    """What every ingest task of a run shares."""

    recipe: Recipe
    splitter: SplitStage  # unplanned: only its group keys are used
    fs: Any  # the store's filesystem
    source_fs: Any  # opens the sources, with the driver's endpoint and keys
    # location -> [stamp, sha256] of the files the driver knows (`provenance.stamped_pins`).
    pins: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestTask:
    """One ingest task: a source (or only its `files`) into part files under `folder`."""

    index: int
    source: SourceConfig
    files: list[str] | None
    # As in `read_source`: one task per source reports what its characters files hold
    # and pins its media files.
    book_entries: bool
    folder: str
    quarantine_path: str
    # The memo of a source that is one JSON lines file (`ingest_memo`): read only what
    # was appended since, and kept for the next run. None: the files are read whole.
    memo: str | None = None
    # file -> where to read it from (`LinesFrom`): lines of a memo read back alone, or
    # the one range of the source's file that this task reads.
    lines_from: dict[str, Any] | None = None
    # One of several tasks that read ranges of the source's one file (`ingest_ranges`):
    # it pins the media of its range and says what of its output is the file's.
    ranged: bool = False


@dataclass
class FileRead:
    """What a ranged ingest task read of its file's range (its characters files' part
    left out): the driver puts the ranges together into the file's memo."""

    records_in: int
    quarantined: int  # the last this many entries of the task's quarantine part
    unmapped: dict[str, int]


@dataclass
class IngestOutcome:
    """What one ingest task read: per-record keys, its quarantine part, counts."""

    index: int
    keys: pa.Table
    records_in: int
    quarantine: QuarantinePart | None
    unmapped_fields: dict[str, int]
    node: str = ""
    media: list[Any] = field(default_factory=list)  # InputFile pins of the source's media
    # SIGNATURE_SCHEMA rows of its records (pipeline.stages.quality; media rows only with
    # `group_media`, `signs_media_at_ingest`); None: near-dup is off.
    signatures: pa.Table | None = None
    # location -> [stamp, sha256] of its media, for the driver's PinCache.
    pins: dict[str, Any] = field(default_factory=dict)
    file: FileRead | None = None  # a ranged task's (`IngestTask.ranged`)


def ingest_keys(table: pa.Table, splitter: SplitStage, part: str, first_row: int) -> pa.Table:
    """Return the KEYS_SCHEMA rows of WORK rows that lie in `part` from `first_row` on."""
    import pyarrow.compute as pc

    n = table.num_rows
    # Both keys name the media by their sha256: each media byte is hashed once for both.
    digests = (media_digests(table["images"]), media_digests(table["audios"]))
    groups = splitter.group_keys(table)
    return pa.table(
        {
            "id": table["id"],
            "key": pa.array(DedupStage().keys(table, digests), pa.string()),
            "group": pa.array(groups, pa.string()),
            # Hashed here, beside the reading: the driver's split plan only sorts them.
            "point": splitter.points(groups),
            "content": pa.array(content_hashes(table, digests), pa.string()),
            "images": pc.list_value_length(table["images"]).cast(pa.int32()),
            "audios": pc.list_value_length(table["audios"]).cast(pa.int32()),
            "source": table["source"],
            "source_ref": table["source_ref"],
            "part": pa.array([part] * n, pa.string()),
            "row": pa.array(np.arange(first_row, first_row + n), pa.int64()),
        },
        schema=KEYS_SCHEMA,
    )


def ingest_source(task: IngestTask, shared: IngestShared) -> IngestOutcome:
    """Read one source (or only its files) into part files; write what its readers
    rejected to the task's quarantine part; return its records' keys."""
    from pipeline.readers import SourceReadStats, read_source

    unmapped: Counter[str] = Counter()
    stats = SourceReadStats(unmapped_fields=unmapped)
    rejected: list[QuarantineEntry] = []
    keys: list[pa.Table] = []
    near_dup = _near_dup_config(shared.recipe)
    signatures: list[pa.Table] = []
    records_in = 0
    remember_pins(shared.pins)
    memo = None
    if task.memo is not None and task.files:
        memo = MemoRead.open(
            task.memo,
            task.files[0],
            shared.fs,
            shared.source_fs,
            lambda pins: media_pins_hold(
                shared.recipe, [InputFile(**p) for p in pins], shared.source_fs
            ),
        )
    file_stats = SourceReadStats()
    file_rejected: list[QuarantineEntry] = []
    with PartWriter(
        task.folder, WORK_SCHEMA, PART_TARGET_BYTES, PART_MAX_ROWS, fs=shared.fs
    ) as parts:

        def flush(chunk: list[dict[str, Any]]) -> None:
            if chunk:
                table = records_to_table(chunk, WORK_SCHEMA)
                where = parts.write(table)
                keys.append(
                    ingest_keys(table, shared.splitter, parts.paths[where.part], where.first_row)
                )
                if near_dup is not None:
                    # Media only where they group (`signs_media_at_ingest`); else the
                    # record pass signs them from the pixels validation decodes.
                    media = signs_media_at_ingest(near_dup)
                    signatures.append(near_dup_signatures(table, near_dup, media=media))

        chunk: list[dict[str, Any]] = []
        chunk_bytes = 0

        def read(items: Any, into: list[QuarantineEntry]) -> int:
            nonlocal chunk, chunk_bytes
            count = 0
            for item in items:
                count += 1
                if isinstance(item, QuarantineEntry):
                    into.append(item)
                    continue
                chunk.append(item)
                chunk_bytes += sum(len(m["bytes"] or b"") for m in item["images"] + item["audios"])
                if len(chunk) >= INGEST_CHUNK_ROWS or chunk_bytes >= INGEST_CHUNK_BYTES:
                    flush(chunk)
                    chunk, chunk_bytes = [], 0
            return count

        source, recipe, source_fs = task.source, shared.recipe, shared.source_fs
        if memo is None and not task.ranged:
            records_in = read(
                read_source(
                    source,
                    recipe,
                    stats,
                    files=task.files,
                    book_entries=task.book_entries,
                    fs=source_fs,
                    lines_from=task.lines_from,
                ),
                rejected,
            )
        else:
            # The characters files' entries first, as a whole read yields them; then the
            # file's lines (all of them, those after its memo, or the task's range).
            if task.book_entries:
                records_in = read(read_source(source, recipe, stats, [], fs=source_fs), rejected)
            file_in = read(
                read_source(
                    source,
                    recipe,
                    file_stats,
                    task.files,
                    book_entries=False,
                    fs=source_fs,
                    lines_from=memo.lines_from() if memo is not None else task.lines_from,
                ),
                file_rejected,
            )
        flush(chunk)
    table = pa.concat_tables(keys) if keys else KEYS_SCHEMA.empty_table()
    sigs = None
    if near_dup is not None:
        sigs = pa.concat_tables(signatures) if signatures else SIGNATURE_SCHEMA.empty_table()
    # The manifest pins every media file by its sha256: hashed here, beside the reading,
    # so the driver never reads a media byte (one task per source does it).
    lines_from = memo.lines_from() if memo is not None else task.lines_from
    pin_media = task.book_entries or task.ranged
    media = media_entries(source, recipe, source_fs, lines_from) if pin_media else []
    file_read = None
    if task.ranged:
        records_in += file_in
        rejected += file_rejected
        unmapped.update(file_stats.unmapped_fields)
        file_read = FileRead(file_in, len(file_rejected), dict(file_stats.unmapped_fields))
    if memo is not None:
        if memo.old is not None:
            detected = memo.old.detected
        elif task.source.format == "auto":
            detected = next(iter(file_stats.detected.values()), None)
        else:
            detected = task.source.format
        kept = file_memo(
            memo,
            detected,
            file_in,
            file_rejected,
            file_stats.unmapped_fields,
            table,
            sigs,
            media,
        )
        memo.keep(kept, shared.fs, source_fs)
        records_in += kept.records_in
        rejected += kept.quarantine
        unmapped.update(kept.unmapped)
        if memo.old is not None:
            table = pa.concat_tables([lying_nowhere(memo.old.keys), table])
        sigs = kept.signatures
        media = [InputFile(**p) for p in kept.media]
    quarantine = write_quarantine_part(task.quarantine_path, rejected, shared.fs)
    pins = stamped_pins(abspath(recipe.resolve(m.path)) for m in media)
    return IngestOutcome(
        task.index,
        table,
        records_in,
        quarantine,
        dict(unmapped),
        node_id(),
        media,
        sigs,
        pins,
        file_read,
    )


def lying_nowhere(keys: pa.Table) -> pa.Table:
    """Return a memo's keys as KEYS_SCHEMA rows (part and row null: their parts are gone)."""
    n = keys.num_rows
    return pa.table(
        {
            f.name: keys[f.name] if f.name in keys.column_names else pa.nulls(n, f.type)
            for f in KEYS_SCHEMA
        },
        schema=KEYS_SCHEMA,
    )


def file_memo(
    memo: MemoRead,
    detected: str | None,
    file_in: int,
    file_rejected: list[QuarantineEntry],
    file_unmapped: dict[str, int],
    keys: pa.Table,
    signatures: pa.Table | None,
    media: list[Any],
) -> IngestMemo:
    """Return the memo of the source file as it is now: the old memo (the file only grew)
    followed by what was read of it now (by one task, or by the ranges' tasks together)."""
    old = memo.old
    pins = {p["path"]: p for p in (old.media if old is not None else [])}
    pins.update((m.path, m.model_dump()) for m in media)
    new_keys = keys.drop_columns(["part", "row"])
    if signatures is not None and old is not None and old.signatures is not None:
        signatures = pa.concat_tables([old.signatures.cast(signatures.schema), signatures])
    return IngestMemo(
        size=memo.now.size,
        sha256=memo.now.sha256 or "",
        lines=memo.now.lines,
        detected=detected,
        records_in=(old.records_in if old is not None else 0) + file_in,
        quarantine=(old.quarantine if old is not None else []) + file_rejected,
        unmapped=dict(Counter(old.unmapped if old is not None else {}) + Counter(file_unmapped)),
        media=[pins[p] for p in sorted(pins)],
        keys=pa.concat_tables([old.keys.cast(new_keys.schema), new_keys])
        if old is not None
        else new_keys,
        signatures=signatures,
    )


def _near_dup_config(recipe: Recipe) -> Any:
    """Return the recipe's NearDupConfig when near-duplicates are on, else None."""
    quality = recipe.quality
    return quality.near_dup if quality is not None and quality.near_dup.enabled else None


def signs_media_at_ingest(near_dup: Any) -> bool:
    """Return whether `run`'s ingest tasks sign images and clips (`near_dup`: the recipe's
    NearDupConfig, on). Only with `group_media`: media pairs then join clusters, which the
    split plan needs before the pass. By default they are only reported, so the record
    pass signs them (`PassContext.sign_media`), mostly from the pixels validation decoded,
    and the driver plans their pairs after it (`pipeline.execution.media_pairs`)."""
    return bool(near_dup.group_media)


def sign_media_in_pass(recipe: Recipe) -> Any:
    """Return the NearDupConfig the record pass signs media under (None: it does not)."""
    near_dup = _near_dup_config(recipe)
    return near_dup if near_dup is not None and not signs_media_at_ingest(near_dup) else None


@dataclass
class OpsChecked:
    """A recipe whose augment ops passed `check_recipe_ops` (in the task that said so)."""

    node: str = ""


def check_ops(recipe: Recipe) -> OpsChecked:
    """Check the recipe's augment ops where they will run (`check_recipe_ops`: it imports
    their libraries, which that worker then keeps for the record pass); raise RecipeError
    naming the op and key of any op its library refuses."""
    check_recipe_ops(recipe)
    return OpsChecked(node_id())


# ---- the record pass: the recipe's stages over each batch, one decode, per slice ----


def build_stages(
    recipe: Recipe,
    split: SplitStage,
    near_dup: Any = None,
    held_out: list[str] | None = None,
    counter: Any = None,
) -> list[Stage]:
    """Return the record pass's stages in the order they run, built from the recipe and
    the driver's plans (`split` must be planned; `near_dup` is the NearDupPlan, None when
    near-duplicates are off): split -> validate -> quality checks -> augment -> token
    ledger (the last two only when the recipe asks for them).

    Split runs first so validation knows which records a later stage decodes again
    (the image augmenters, on train records) and keeps their pixels in the batch context;
    a split decided by the driver's plan takes no slot away when a later stage rejects.
    The quality checks run on validated originals, before augment, so a record they
    quarantine makes no variants; the token ledger (`counter`, a TokenCounter) runs last,
    so variants are counted as they are written.
    """
    augmenter = None
    if recipe.augment.copies > 0:
        from augmenters import RecordAugmenter

        augmenter = RecordAugmenter(recipe.augment, recipe.seed, recipe.recipe_hash)
    augment = AugmentStage(augmenter, recipe.limits)
    keep_pixels = frozenset({"train"}) if augment.decodes_images else frozenset()
    keep_samples = frozenset({"train"}) if augment.decodes_audio else frozenset()
    checks, ledger = _quality_part(recipe, near_dup, held_out, counter)
    validate = ValidateStage(recipe.limits, keep_pixels, keep_samples)
    return [split, validate, *checks, augment, *ledger]


def quality_stage_names(
    recipe: Recipe, near_dup: Any = None, held_out: list[str] | None = None, counter: Any = None
) -> list[str]:
    """Return the names of the quality stages `build_stages` would build, in run order,
    without building the augmenter (whose ops import their libraries): what the ledger
    needs to count cache hits when nothing misses and no stage is built."""
    checks, ledger = _quality_part(recipe, near_dup, held_out, counter)
    return [stage.name for stage in (*checks, *ledger)]


def _quality_part(
    recipe: Recipe, near_dup: Any, held_out: list[str] | None, counter: Any
) -> tuple[list[Stage], list[Stage]]:
    """Return the quality checks (before augment) and the token ledger (after it, [] or one)."""
    quality = recipe.quality
    if quality is None:
        return [], []
    checks = quality_stages(quality, near_dup, held_out=held_out)
    ledger = token_ledger_stage(quality, counter) if counter is not None else None
    return checks, [ledger] if ledger is not None else []


@dataclass(frozen=True)
class Slice:
    """Rows [offset, offset + length) of one ingested part file."""

    part: str
    offset: int
    length: int


@dataclass
class PassContext:
    """What every record-pass task of a run shares (sent to the cluster once)."""

    fs: Any
    stages: list[Stage]
    # Rows of the slices that are not this pass's work: duplicates (the driver's dedup
    # plan) and records the cache already holds.
    skip_ids: pa.Array
    batch_size: int
    # The recipe has `quality:`: every written row gets a quality struct (no null one),
    # even where no quality stage had anything to say about it.
    quality_column: bool = False
    # The CPUs one task holds: OpenCV's own thread pool is held to them (`_opencv_threads`).
    task_cpus: float = 1.0
    # The NearDupConfig under which the records validation sees are media-signed
    # (`sign_media_in_pass`); None: the ingest signed them, or near-duplicates are off.
    sign_media: Any = None


_USER_OPENCV_THREADS = "OPENCV_FOR_THREADS_NUM" in os.environ


def _opencv_threads(cpus: float) -> None:
    """Hold OpenCV's thread pool to the CPUs a task holds (at least 1).

    OpenCV (pthreads pool, one thread per core by default) splits even a 224 px resize or
    colour conversion over every core; in a task that holds one CPU beside others that do
    the same, the threads' hand-offs and spinning cost CPU, not time: the record pass took
    11.78 -> 10.93 ms CPU a record with one thread (benchmarks/record_pass.py, 2 cores).
    The pixels are the same: each output pixel is computed the same way in any stripe.
    An OPENCV_FOR_THREADS_NUM the user set is left alone.
    """
    if _USER_OPENCV_THREADS:
        return
    threads = max(1, int(cpus))
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(threads)
    else:  # read when OpenCV first sizes its pool (not imported yet: no import for it)
        os.environ["OPENCV_FOR_THREADS_NUM"] = str(threads)


@dataclass(frozen=True)
class PassTask:
    """One record-pass task: its slices, its output part and its quarantine part."""

    slices: list[Slice]
    output: str
    quarantine_path: str


@dataclass
class StageTally:
    """What one stage of the record pass took in, let out and rejected, and its stats."""

    records_in: int = 0
    out: int = 0
    quarantined: int = 0
    stats: Counter[str] = field(default_factory=Counter)

    def add(self, records_in: int, output: StageOutput) -> None:
        self.records_in += records_in
        self.out += output.table.num_rows
        self.quarantined += len(output.rejects)
        self.stats.update(output.stats)

    def merge(self, other: StageTally) -> None:
        self.records_in += other.records_in
        self.out += other.out
        self.quarantined += other.quarantined
        self.stats.update(other.stats)


@dataclass
class PassOutcome:
    """What one record-pass task made: its output rows, its counts per stage (in the order
    the stages ran), the augment stats and its quarantine part."""

    rows: pa.Table
    tallies: dict[str, StageTally]
    stats: AugmentStats
    quarantine: QuarantinePart | None
    node: str = ""
    # The image and audio SIGNATURE_SCHEMA rows of the records validation saw
    # (`PassContext.sign_media`); None when the pass signs none.
    signatures: pa.Table | None = None

    @property
    def records_in(self) -> int:
        """The records that entered the first stage."""
        return next(iter(self.tallies.values())).records_in if self.tallies else 0


def node_id() -> str:
    """Return the Ray node this runs on ("" outside Ray: tests call tasks directly)."""
    # Not imported, not running: a task in the driver's process (`TaskRunner`) must not
    # pay Ray's import (~0.8 s) to learn that.
    ray = sys.modules.get("ray")
    if ray is None:
        return ""
    try:
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:
        return ""


def record_pass(task: PassTask, ctx: PassContext) -> PassOutcome:
    """Run the stages of `ctx` over the records of the task's slices (all but
    `ctx.skip_ids`), batch by batch; write what is kept, originals then their variants, to
    the task's output part and what a stage rejected to its quarantine part."""
    _opencv_threads(ctx.task_cpus)
    tallies = {stage.name: StageTally() for stage in ctx.stages}
    stats = AugmentStats()
    rejected: list[QuarantineEntry] = []
    index: list[pa.Table] = []
    signed: list[pa.Table] = []
    with PartWriter(task.output, WORK_SCHEMA, fs=ctx.fs, single_file=True) as out:
        for batch in _batches(task.slices, ctx.fs, ctx.batch_size, ctx.skip_ids):
            shared = BatchContext()
            table = batch
            for stage in ctx.stages:
                output = stage.process(table, shared)
                if ctx.sign_media is not None and stage.name == ValidateStage.name:
                    # Every record validation saw, as the ingest signs every record: those
                    # it kept from the pixels it decoded, those it rejected (a partner a
                    # kept record is still flagged with) from their bytes.
                    signed.append(pass_media_signatures(table, shared, ctx.sign_media))
                tallies[stage.name].add(table.num_rows, output)
                if output.rejects:
                    rejected.extend(output.rejects)
                    shared.forget({e.record_id for e in output.rejects if e.record_id})
                if isinstance(output.detail, AugmentStats):
                    stats.merge(output.detail)
                table = output.table
            if ctx.quality_column:
                table = add_flags(table, {})
            where = out.write(table)
            if where is not None:
                index.append(
                    _rows_of(table, task.output, where.first_row, _row_stats(table, shared))
                )
    # One chunk per column, not one per batch: Ray rebuilds a returned table array by
    # array, so 6,000 batch chunks cost the driver ~30 us each to receive (at 100,000
    # text records, 2 of its 7.7 s); combined here, in the task, they cost it nothing.
    rows = pa.concat_tables(index).combine_chunks() if index else ROWS_SCHEMA.empty_table()
    quarantine = write_quarantine_part(task.quarantine_path, rejected, ctx.fs)
    signatures = None
    if ctx.sign_media is not None:
        signatures = (
            pa.concat_tables(signed).combine_chunks() if signed else SIGNATURE_SCHEMA.empty_table()
        )
    return PassOutcome(rows, tallies, stats, quarantine, node_id(), signatures)


def pass_media_signatures(table: pa.Table, shared: BatchContext, config: Any) -> pa.Table:
    """Return the image and audio SIGNATURE_SCHEMA rows of the records of `table` (the
    batch validation just saw): images from the pixels validation left in `shared.decoded`
    (HxWx3 RGB, of the records it kept in the splits augmentation decodes) else from their
    bytes, clips likewise from the (samples, rate) validation decoded. A media item that
    does not decode gets no row, as at the ingest."""
    records = shared.rows(table)

    def pixels(record_id: str, item: int) -> Any:
        rgb = shared.decoded.get((record_id, "images", item))
        return rgb if rgb is not None and rgb.ndim == 3 and rgb.shape[2] == 3 else None

    def samples(record_id: str, item: int) -> Any:
        return shared.decoded.get((record_id, "audios", item))  # (samples, rate)

    items = ((r["id"], r["images"], r["audios"]) for r in records)
    return media_signatures(items, config, pixels, samples)


def _row_stats(table: pa.Table, ctx: BatchContext) -> list[str | None]:
    """Return per output row the AugmentStats JSON of an augmented original (the cache
    keeps it), None for other rows."""
    out: list[str | None] = []
    for record_id in table["id"].to_pylist():
        stats = ctx.facts.get((record_id, AugmentStage.name))
        out.append(json.dumps(stats.to_dict(), sort_keys=True) if stats is not None else None)
    return out


def _rows_of(
    table: pa.Table, path: str, first_row: int, stats: list[str | None] | None = None
) -> pa.Table:
    n = table.num_rows
    return pa.table(
        {
            "split": table["split"],
            "id": table["id"],
            "parent_id": table["parent_id"],
            "part": pa.array([path] * n, pa.string()),
            "row": pa.array(np.arange(first_row, first_row + n), pa.int64()),
            "nbytes": pa.array(row_nbytes(table), pa.int64()),
            "stats": pa.array(stats if stats is not None else [None] * n, pa.string()),
            "row_sha256": pa.nulls(n, pa.string()),
        },
        schema=ROWS_SCHEMA,
    )


def _batches(slices: list[Slice], fs: Any, batch_size: int, skip_ids: pa.Array):
    import pyarrow.compute as pc

    for s in slices:
        table = read_part(s.part, fs).slice(s.offset, s.length)
        for offset in range(0, table.num_rows, batch_size):
            batch = table.slice(offset, batch_size)
            if len(skip_ids):
                batch = batch.filter(pc.invert(pc.is_in(batch["id"], value_set=skip_ids)))
            yield batch


@dataclass(frozen=True)
class RebaseTask:
    """Rows of one cached part made under another recipe, to copy under `recipe_hash`."""

    part: str
    rows: list[int]
    stats: list[str | None]
    recipe_hash: str
    output: str


@dataclass
class RebaseOutcome:
    rows: pa.Table  # ROWS_SCHEMA
    node: str = ""


def rebase_rows(task: RebaseTask, fs: Any) -> RebaseOutcome:
    """Copy rows of a cached part made under another recipe into the part file
    `task.output`, with their variants' ids and `augmentation.recipe_hash` made by
    `task.recipe_hash`. Nothing is augmented again: the variants' content depends on the
    seed, the record and its ops only (which the cache key pins)."""
    import pyarrow.compute as pc

    from pipeline.record.ids import variant_id

    table = read_part(task.part, fs).take(pa.array(task.rows, pa.int64()))
    is_variant = pc.is_valid(table["parent_id"]).to_numpy(zero_copy_only=False)
    originals = table.filter(pa.array(~is_variant))
    # Variants are rebuilt from dicts, as the augment stage builds them, so their Arrow
    # buffers (and the shard bytes) are those of a run from scratch.
    variants = table.filter(pa.array(is_variant)).to_pylist()
    for variant in variants:
        variant["id"] = variant_id(
            variant["parent_id"], task.recipe_hash, variant["augmentation"]["copy"]
        )
        variant["augmentation"]["recipe_hash"] = task.recipe_hash
    out_table = pa.concat_tables([originals, records_to_table(variants, WORK_SCHEMA)])
    original_stats = [s for s, v in zip(task.stats, is_variant, strict=True) if not v]
    with PartWriter(task.output, WORK_SCHEMA, fs=fs, single_file=True) as out:
        out.write(out_table)
    row_stats = original_stats + [None] * len(variants)
    return RebaseOutcome(_rows_of(out_table, task.output, 0, row_stats), node_id())


# ---- shards: one task per shard ----


@dataclass
class CountedShard:
    """The card's statistics of one written shard (`pipeline.cards.composition`)."""

    composition: Any
    node: str = ""


def count_shard(version_dir: str, shard: Any, fs: Any) -> CountedShard:
    """Return the composition statistics of one written shard (its ShardEntry under
    `version_dir`), for the version's cards: counted here, not in the driver."""
    return CountedShard(shard_composition(version_dir, shard, fs), node_id())


@dataclass
class ShardOutcome:
    written: WrittenShard
    node: str = ""


def write_shard(plan: ShardPlan, paths: list[str], writer: ShardWriter) -> ShardOutcome:
    """Write one planned shard from the part files `paths` (the plan's `part` numbers index
    them); return its manifest entry, its row digests and the node that wrote it."""
    return ShardOutcome(writer.write_shard(plan, PartSet(paths, writer.fs)), node_id())
