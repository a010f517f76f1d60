"""Media near-duplicates planned after the record pass: what the cache keeps of a record's
media hashes plans the same pairs, variants get their parent's flags, and the pass's
near-duplicate tally counts what its stage could not see yet."""

from __future__ import annotations

import pyarrow as pa

from pipeline.execution.media_pairs import (
    count_pass_media,
    media_of_index,
    media_texts,
    plan_media,
    row_flags,
)
from pipeline.execution.passes import StageTally
from pipeline.record.rejection import QuarantineEntry
from pipeline.stages.quality.config import NearDupConfig
from pipeline.stages.quality.near_dup import NearDupStage, media_flags
from pipeline.stages.quality.signatures import SIGNATURE_SCHEMA, hash_bands

CONFIG = NearDupConfig()


def _rows(*items: tuple[str, str, int, int | None]) -> pa.Table:
    out: dict[str, list] = {f.name: [] for f in SIGNATURE_SCHEMA}
    for record_id, modality, item, value in items:
        out["id"].append(record_id)
        out["item"].append(item)
        if value is None:
            out["modality"].append(f"{modality}_unhashed")
            out["bands"].append([])
            out["signature"].append(b"")
        else:
            distance = CONFIG.image_distance if modality == "image" else CONFIG.audio_distance
            out["modality"].append(modality)
            out["bands"].append(hash_bands(value, distance))
            out["signature"].append(value.to_bytes(8, "big"))
    return pa.Table.from_pydict(out, schema=SIGNATURE_SCHEMA)


SIGNED = _rows(
    ("a", "image", 0, 0xF0F0F0F0F0F0F0F0),
    ("b", "image", 0, 0xF0F0F0F0F0F0F0F3),  # 2 bits from a's
    ("b", "audio", 0, None),  # too short to hash
    ("c", "image", 0, 0x0F0F0F0F0F0F0F0F),
)


def test_the_media_hashes_the_cache_keeps_plan_the_same_pairs_as_the_signed_rows() -> None:
    texts = media_texts(SIGNED, ["a", "b", "c", "d"])
    assert texts["d"] == "[]"  # signed, no media
    index = pa.table(
        {
            "id": list(texts),
            "parent_id": pa.nulls(len(texts), pa.string()),
            "media": list(texts.values()),
        }
    )
    kept = media_of_index(index, CONFIG)
    assert kept.sort_by("id").equals(SIGNED.sort_by("id"))
    plan = plan_media(kept, CONFIG)
    assert plan.pairs.to_pylist() == plan_media(SIGNED, CONFIG).pairs.to_pylist()
    assert [(p["a"], p["b"], p["modality"]) for p in plan.pairs.to_pylist()] == [
        ("a", "b", "image")
    ]
    assert plan.unhashed == {"b": 1}


def test_variants_get_their_parents_media_flags() -> None:
    found = media_flags(plan_media(SIGNED, CONFIG))
    rows = pa.table(
        {"id": ["a", "a-1", "c", "b"], "parent_id": [None, "a", None, None]},
        schema=pa.schema([("id", pa.string()), ("parent_id", pa.string())]),
    )
    flags = row_flags(found, rows)
    assert flags["a"] == flags["a-1"] == [("near_duplicate_image", "image 0.97 with b")]
    assert flags["b"] == [("near_duplicate_image", "image 0.97 with a")]
    assert "c" not in flags


def test_the_pass_tally_counts_media_of_records_that_reached_the_near_duplicate_stage() -> None:
    plan = plan_media(SIGNED, CONFIG)
    order = ["split", "validate", "quality.slop", NearDupStage.name, "augment"]
    tallies = {NearDupStage.name: StageTally()}
    # b left at the slop check: its flag and unhashed clip are not counted by the stage.
    slop = QuarantineEntry("quality.slop", "slop", "3 phrases", "s", "s:2", record_id="b")
    count_pass_media(tallies, order, plan, SIGNED, [slop])
    assert dict(tallies[NearDupStage.name].stats) == {"near_duplicate_image": 1}
    tallies = {NearDupStage.name: StageTally()}
    count_pass_media(tallies, order, plan, SIGNED, [])
    stats = tallies[NearDupStage.name].stats
    assert stats == {"near_duplicate_image": 2, "audio_without_hash": 1}
