"""The quality stages' counts of the records a run took from the record cache.

The manifest's `quality` counts what the quality stages saw. Records the cache holds are
not processed again, so their share is rebuilt from what the cache keeps of them: the
`quality` struct of each kept row (originals and variants, read from the cached part
files; no media column is read) and the quarantine entry of each rejected record, walked
through the stages in the order the record pass runs them. A rerun through the cache then
counts what a run from scratch counts, so the manifest, the card and `roleforge inspect`
agree. Near-duplicate flags come from this run's plan (the cache key pins what the plan
made before the pass says about a record; media pairs planned after it are merged in,
`media_pairs`), token counts from the rows. Not rebuilt: a flag a record got before
a later stage quarantined it (the cache keeps the record's rejection, not its flags), and
the variants a token limit quarantined (the cache keeps originals' rejections only).
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.execution.passes import StageTally
from pipeline.record.rejection import QuarantineEntry
from pipeline.stages.quality.near_dup import NearDupStage
from pipeline.stages.quality.tokens import TokenLedgerStage
from pipeline.store.staging import read_part

PREFIX = "quality."
# The token ledger's note on a record it quarantined ("1234 tokens, over max_tokens 1000").
_TOKENS_NOTE = re.compile(r"^(\d+) tokens")


def cached_quality_tallies(
    order: list[str],
    rows: pa.Table,
    entries: list[QuarantineEntry],
    fs: Any,
    near_dup: NearDupStage | None = None,
) -> dict[str, StageTally]:
    """Return per quality stage (of `order`, the record pass's stage names in run order)
    what it would have counted over cached `rows` (ROWS_SCHEMA: part, row, parent_id) and
    the cached rejections `entries`; `near_dup` applies this run's near-duplicate plan."""
    names = [n for n in order if n.startswith(PREFIX)]
    tallies = {n: StageTally() for n in names}
    if not names:
        return tallies
    for parent_id, (record_id, quality) in zip(
        rows["parent_id"].to_pylist(), _quality_of(rows, fs), strict=True
    ):
        for name in names:
            if name == TokenLedgerStage.name:
                _count_tokens(tallies[name], quality)
            elif parent_id is None:  # the checks run before augment: originals only
                _passed(tallies[name], name, quality, near_dup, record_id)
    for entry in entries:
        if entry.stage not in tallies:
            continue  # rejected before the quality stages (validation)
        for name in names[: names.index(entry.stage)]:
            if name != TokenLedgerStage.name:
                _passed(tallies[name], name, None, near_dup, entry.record_id)
        _rejected(tallies[entry.stage], entry, near_dup)
    for name, tally in tallies.items():
        # A check counts its reason in every batch it sees, found or not.
        if tally.records_in and _is_check(name):
            tally.stats[name[len(PREFIX) :]] += 0
    return tallies


def _is_check(name: str) -> bool:
    return name not in (TokenLedgerStage.name, NearDupStage.name)


def _quality_of(rows: pa.Table, fs: Any) -> list[tuple[str, dict[str, Any] | None]]:
    """Return (record id, `quality` struct) of each row, in order."""
    out: list[tuple[str, dict[str, Any] | None]] = [("", None)] * rows.num_rows
    for part in rows["part"].unique().to_pylist():
        at = pc.equal(rows["part"], part).to_numpy(zero_copy_only=False).nonzero()[0]
        picked = rows.take(pa.array(at, pa.int64()))
        table = read_part(part, fs).select(["id", "quality"])
        taken = table.take(picked["row"].combine_chunks())
        for i, record_id, quality in zip(
            at, taken["id"].to_pylist(), taken["quality"].to_pylist(), strict=True
        ):
            out[i] = (record_id, quality)
    return out


def _passed(
    tally: StageTally,
    name: str,
    quality: dict[str, Any] | None,
    near_dup: NearDupStage | None,
    record_id: str | None,
) -> None:
    tally.records_in += 1
    tally.out += 1
    if name == NearDupStage.name:
        if near_dup is not None and record_id:
            tally.stats.update(near_dup.counted(record_id))
    elif quality is not None and name[len(PREFIX) :] in (quality.get("flags") or []):
        tally.stats[name[len(PREFIX) :]] += 1


def _rejected(tally: StageTally, entry: QuarantineEntry, near_dup: NearDupStage | None) -> None:
    tally.records_in += 1
    tally.quarantined += 1
    if entry.stage == NearDupStage.name:
        if near_dup is not None and entry.record_id:
            tally.stats.update(near_dup.counted(entry.record_id))
        tally.stats["quarantined"] += 1
    elif entry.stage == TokenLedgerStage.name:
        tally.stats["records"] += 1
        found = _TOKENS_NOTE.match(entry.message or "")
        tally.stats["tokens"] += int(found.group(1)) if found else 0
        tally.stats[entry.reason] += 1
    else:
        tally.stats[entry.reason] += 1


def _count_tokens(tally: StageTally, quality: dict[str, Any] | None) -> None:
    tally.records_in += 1
    tally.out += 1
    tally.stats["records"] += 1
    tally.stats["tokens"] += (quality or {}).get("tokens") or 0
    flags = (quality or {}).get("flags") or []
    if "too_many_tokens" in flags or "truncated" in flags:
        tally.stats["too_many_tokens"] += 1
    if "truncated" in flags:
        tally.stats["truncated"] += 1
