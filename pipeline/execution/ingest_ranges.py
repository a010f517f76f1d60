"""One big JSON lines file read by several ingest tasks, each a byte range of it.

A source that is one file was one ingest task: on a machine of several CPUs the others
idled while it parsed every line, loaded and hashed its media and wrote its parts. The
driver now cuts such a file into about `INGEST_TASKS_PER_CPU` x CPUs ranges, each
beginning at a line's first byte (a cut is moved on to the byte after the next newline,
so no line, CRLF ending or multi-byte character is split: in UTF-8 the newline byte
occurs in no other character). It counts the newlines before each cut in one pass over
the file, so every task numbers its lines as a whole read would (`LinesFrom`), and it
detects the file's format once from its first records, as a whole read does. Each task
reads its range by seeking (ranged GETs on an object store), pins the media its range
names, and reports what of its output is the file's (`passes.FileRead`).

Put back together in range order, the tasks' outputs are the whole read's: records,
keys and ids in file order (exact duplicates resolve alike), the characters files'
quarantine entries (the first task's) before the file's, the unmapped-field counts summed,
the media pins merged. A file with an ingest memo (`ingest_memo`) is hashed in the same
pass; only the bytes after a usable memo are cut into ranges, and the driver writes the
new memo from the ranges' outputs.

Only a UTF-8 file stored as JSON lines is cut: UTF-16/32 text is transcoded whole, a
`.jsonl` holding one JSON array is one document, and a SillyTavern chat file is one
record, so those are read whole by one task, as is a file too small to pay for more
tasks than one (`SPLIT_FROM_BYTES`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline.execution.ingest_memo import (
    MemoRead,
    file_prefix,
    is_json_lines,
    load_memo,
    usable_memo,
)
from pipeline.execution.passes import KEYS_SCHEMA, IngestOutcome, file_memo, lying_nowhere
from pipeline.readers import LinesFrom, whole_read_format
from pipeline.readers.files import sniff_kind
from pipeline.record.rejection import QuarantineEntry
from pipeline.store.manifest import InputFile

# A file under this is read by one task. Measured on 2 loaded CPUs (load 7-12), the
# benchmark's whole job (cache off, warm workers, one Ray session, alternating), the
# ingest stage's median, one task vs ranges: 546 KB (400 records) 0.34 vs 0.41 s over 8
# pairs but 0.62 vs 0.47 s over 6 (noise: no gain to count on); 1.1 MB (800 records) 0.61
# vs 0.44 s over 6; 2.8 MB (2,000 records) 2.84 vs 2.66 s over 3. Ingest alone with warm
# workers broke even near 210 KB; ranges cost 0.01-0.03 s more CPU (a task's submit and
# collect, the driver's pass over the file). Measured again on 2 quiet CPUs (2026-12-07,
# the same job, 6 alternated pairs): 559 KB (400 records) in one task, ingest 0.33 s and
# job 3.42 s (medians); in 4 ranges, 0.21 and 3.27 s (5 pairs faster, 1 even). A file big
# enough to take a job to Ray at all (`execution.in_process_records` x 1 KiB: 500 KB) is
# split from this size on.
SPLIT_FROM_BYTES = 128 * 1024
# No range is smaller than this (~45 records of the benchmark corpus, ~55 ms of ingest).
MIN_RANGE_BYTES = 64 * 1024


@dataclass
class RangePlan:
    """How one source file is read in ranges: where each begins (with its line number and
    the format), and its memo's judgement (None: the source keeps no memo)."""

    file: str
    ranges: list[LinesFrom]
    memo: MemoRead | None


def plan_ranges(
    file: str,
    source_format: str,
    pieces: int,
    memo_path: str | None,
    fs: Any,
    source_fs: Any,
    media_hold: Any,
) -> RangePlan | None:
    """Return how to read `file` (one source's only file, of format `source_format`) in up
    to `pieces` ranges, or None when one task reads it whole (too small, not UTF-8 JSON
    lines, or one record per file). `media_hold(pins)`: whether a memo's media still hold."""
    size = source_fs.size(file) or 0
    if pieces < 2 or size < max(SPLIT_FROM_BYTES, 2 * MIN_RANGE_BYTES):
        return None
    if not is_json_lines(file, source_fs) or sniff_kind(file, source_fs) != "jsonl":
        return None
    fmt: str | None = source_format
    if source_format == "auto":
        fmt = whole_read_format(file, source_fs)
    if fmt == "sillytavern":
        return None
    old = load_memo(memo_path, fs) if memo_path is not None else None
    start = old.size if old is not None and old.size <= size else 0
    cuts = _cuts(file, start, size, pieces, source_fs)
    now = file_prefix(file, start, source_fs, [start, *cuts], digest=memo_path is not None)
    memo = None
    if memo_path is not None:
        memo = MemoRead(memo_path, file, now, usable_memo(old, file, now, media_hold, source_fs))
    if start and (memo is None or memo.old is None):
        # The memo does not stand for the file's first bytes: all of it is read again.
        start = 0
        cuts = _cuts(file, 0, size, pieces, source_fs)
        now = file_prefix(file, 0, source_fs, cuts, digest=False)
    if memo is not None and memo.old is not None:
        fmt = memo.old.detected  # as the memo's whole read detected it
    starts = [start, *cuts]
    ends = [*cuts, now.size]
    ranges = [
        LinesFrom(offset=a, line=now.lines_at.get(a, 0), detected=fmt, end=b)
        for a, b in zip(starts, ends, strict=True)
    ]
    return RangePlan(file, ranges, memo)


def _cuts(file: str, start: int, size: int, pieces: int, source_fs: Any) -> list[int]:
    """Return where the ranges after the first begin: near each of `pieces` equal shares
    of the bytes from `start`, moved on to the next line's first byte (each read is one
    line long)."""
    pieces = min(pieces, max(1, (size - start) // MIN_RANGE_BYTES))
    cuts: list[int] = []
    with source_fs.open(file) as f:
        for k in range(1, pieces):
            at = max(start + (size - start) * k // pieces, cuts[-1] if cuts else start)
            f.seek(at)
            line = f.readline()
            cut = at + len(line)
            if line.endswith(b"\n") and cut < size and (not cuts or cut > cuts[-1]):
                cuts.append(cut)
    return cuts


@dataclass
class RangedRead:
    """One ranged source's tasks' outputs as one whole read's."""

    records_in: int
    entries: list[QuarantineEntry]
    unmapped: Counter[str]
    media: list[InputFile]
    keys: pa.Table
    signatures: pa.Table | None


def merge_ranges(
    plan: RangePlan,
    outcomes: list[IngestOutcome],
    entries: list[list[QuarantineEntry]],
    fs: Any,
    source_fs: Any,
) -> RangedRead:
    """Return the ranges' outcomes (in range order, with their quarantine parts' entries)
    as the whole read of the file would have returned them, after its memo (if usable);
    keep the file's new memo."""
    old = plan.memo.old if plan.memo is not None else None
    book: list[QuarantineEntry] = []
    file_entries: list[QuarantineEntry] = []
    unmapped: Counter[str] = Counter()
    file_unmapped: Counter[str] = Counter()
    file_in = records_in = 0
    media: dict[str, InputFile] = {}
    for outcome, its in zip(outcomes, entries, strict=True):
        assert outcome.file is not None
        cut = len(its) - outcome.file.quarantined
        book += its[:cut]
        file_entries += its[cut:]
        records_in += outcome.records_in
        file_in += outcome.file.records_in
        unmapped.update(outcome.unmapped_fields)
        file_unmapped.update(outcome.file.unmapped)
        media.update((m.path, m) for m in outcome.media)
    keys = pa.concat_tables([o.keys for o in outcomes]) if outcomes else KEYS_SCHEMA.empty_table()
    sigs = None
    if outcomes and outcomes[0].signatures is not None:
        sigs = pa.concat_tables([o.signatures for o in outcomes if o.signatures is not None])
    pins = [media[p] for p in sorted(media)]
    if plan.memo is None:
        return RangedRead(records_in, book + file_entries, unmapped, pins, keys, sigs)
    detected = plan.ranges[0].detected
    kept = file_memo(plan.memo, detected, file_in, file_entries, file_unmapped, keys, sigs, pins)
    plan.memo.keep(kept, fs, source_fs)
    if old is not None:
        records_in += old.records_in
        unmapped.update(old.unmapped)
        keys = pa.concat_tables([lying_nowhere(old.keys), keys])
    return RangedRead(
        records_in,
        book + (old.quarantine if old is not None else []) + file_entries,
        unmapped,
        [InputFile(**p) for p in kept.media],
        keys,
        kept.signatures,
    )
