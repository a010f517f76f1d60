"""Near-duplicate media pairs planned after the record pass (`quality.near_dup` without
`group_media`, the default).

Image and audio pairs are then only reported (flags `near_duplicate_image` /
`near_duplicate_audio`, the `audio_without_hash` count), never grouped or dropped, so the
split plan does not need them: the ingest tasks sign text and greetings only, the record
pass signs the media of every record validation sees (`passes.pass_media_signatures`: those
it keeps from the pixels it decoded, those it rejects from their bytes, since a kept record
is still flagged with such a partner, as when the ingest signed every record), and the
driver plans their pairs here, over the pass's rows and those the record cache kept of its
hits (`CACHE_INDEX_SCHEMA.media`). What the pass's
near-duplicate stage could not count yet is added to its tally (`count_pass_media`), the
plan merged into the run's (`with_media_pairs`) for what reads it afterwards (the cached
records' counts, the manifest), and the flags reach the rows as the shard writer writes
them (`ShardPlan.flags`), after those the pass wrote.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.execution.passes import StageTally
from pipeline.record.rejection import QuarantineEntry
from pipeline.stages.quality.config import NearDupConfig
from pipeline.stages.quality.near_dup import NearDupStage, flags_digest
from pipeline.stages.quality.planner import NearDupPlan, plan_near_duplicates
from pipeline.stages.quality.signatures import SIGNATURE_SCHEMA, hash_bands


def media_of_index(index_rows: pa.Table, config: NearDupConfig) -> pa.Table:
    """Return the SIGNATURE_SCHEMA rows the cache kept of its records (`media` on their
    originals' and rejected records' index rows), their bands cut again under `config`
    (whose distances are in the records' cache keys)."""
    rows = index_rows.filter(
        pc.and_(pc.is_null(index_rows["parent_id"]), pc.is_valid(index_rows["media"]))
    )
    out: dict[str, list[Any]] = {f.name: [] for f in SIGNATURE_SCHEMA}
    distance = {"image": config.image_distance, "audio": config.audio_distance}
    for record_id, text in zip(rows["id"].to_pylist(), rows["media"].to_pylist(), strict=True):
        for modality, item, value in json.loads(text):
            out["id"].append(record_id)
            out["modality"].append(modality)
            out["item"].append(item)
            if value is None:
                out["bands"].append([])
                out["signature"].append(b"")
            else:
                number = int(value, 16)
                out["bands"].append(hash_bands(number, distance[modality]))
                out["signature"].append(number.to_bytes(8, "big"))
    return pa.Table.from_pydict(out, schema=SIGNATURE_SCHEMA)


def media_texts(signatures: pa.Table, ids: list[str]) -> dict[str, str]:
    """Return per record of `ids` its media rows of SIGNATURE_SCHEMA `signatures` as the
    cache keeps them (`CACHE_INDEX_SCHEMA.media`; "[]": signed, none)."""
    out: dict[str, list[Any]] = {i: [] for i in ids}
    for record_id, modality, item, signature in zip(
        *(signatures[c].to_pylist() for c in ("id", "modality", "item", "signature")),
        strict=True,
    ):
        if record_id in out:
            out[record_id].append([modality, item, signature.hex() if signature else None])
    return {i: json.dumps(rows, separators=(",", ":")) for i, rows in out.items()}


def plan_media(signatures: pa.Table, config: NearDupConfig) -> NearDupPlan:
    """Return the plan of the media rows (image, audio, audio_unhashed) of a run."""
    return plan_near_duplicates(signatures, config)


def row_flags(
    found: dict[str, list[tuple[str, str]]], rows: pa.Table
) -> dict[str, list[tuple[str, str]]]:
    """Return per output row id (ROWS_SCHEMA `rows`: originals and variants) the media flags
    the writer adds to it (`found`: `media_flags` by original id): an original's own, a
    variant its parent's (variants inherit their parent's findings, `inherited`)."""
    if not found:
        return {}
    out = {}
    ids, parents = rows["id"].to_pylist(), rows["parent_id"].to_pylist()
    for record_id, parent in zip(ids, parents, strict=True):
        flags = found.get(parent if parent is not None else record_id)
        if flags:
            out[record_id] = flags
    return out


def flags_digests(flags: dict[str, list[tuple[str, str]]], ids: list[str]) -> list[str]:
    """Return per row id the digest of the media flags the writer adds to it."""
    return [flags_digest(flags.get(i, [])) for i in ids]


def count_pass_media(
    tallies: dict[str, StageTally],
    order: list[str],
    plan: NearDupPlan,
    signed: pa.Table,
    entries: list[QuarantineEntry],
) -> None:
    """Add to the pass's near-duplicate tally what its stage would have counted of media:
    each media flag once per record and the clips without a hash, for every record the pass
    signed (`signed`: its media rows) that reached the stage (not quarantined by a check
    before it)."""
    tally = tallies.get(NearDupStage.name)
    if tally is None:
        return
    before = set(order[: order.index(NearDupStage.name)]) if NearDupStage.name in order else set()
    left = {e.record_id for e in entries if e.stage in before}
    stage = NearDupStage(plan)
    stats: Counter[str] = Counter()
    for record_id in sorted(set(signed["id"].to_pylist()) - left):
        stats.update(stage.counted(record_id))
    tally.stats.update(stats)
