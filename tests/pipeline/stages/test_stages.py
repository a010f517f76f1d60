"""The record stages on Arrow tables, without Ray: validate, dedup, split, augment."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pytest

from augmenters.stats import AugmentStats
from pipeline.recipe import MediaLimits, SplitConfig
from pipeline.record.ids import variant_id
from pipeline.record.schema import WORK_SCHEMA, records_to_table
from pipeline.stages.augment import AugmentStage
from pipeline.stages.base import BatchContext
from pipeline.stages.dedup import DedupStage
from pipeline.stages.split import SplitStage, split_counts
from pipeline.stages.validate import ValidateStage
from pipeline.store.fs import LocalFS
from pipeline.store.staging import PartWriter
from tests.fixtures.media import audio_bytes, image_bytes
from tests.pipeline.execution.datajob_corpus import work_record, work_table


def test_validate_keeps_valid_records_and_quarantines_each_bad_one_with_its_reason() -> None:
    bad_count = work_record(1, images=[])  # one <image> placeholder, no image
    corrupt = work_record(2, images=[{"bytes": b"not an image", "path": "x.png"}])
    table = work_table([work_record(0), bad_count, corrupt, work_record(3)])
    result = ValidateStage(MediaLimits()).process(table, BatchContext())
    assert result.table["id"].to_pylist() == ["id-0000", "id-0003"]
    assert [(e.stage, e.reason, e.record_id) for e in result.rejects] == [
        ("validate", "placeholder_mismatch", "id-0001"),
        ("validate", "corrupt_image", "id-0002"),
    ]
    assert result.rejects[0].source_ref == "d.jsonl:2"
    assert result.stats == {"placeholder_mismatch": 1, "corrupt_image": 1}


def test_validate_leaves_the_pixels_of_the_splits_a_later_stage_decodes_in_the_context() -> None:
    records = [work_record(0, split="train"), work_record(1, split="test")]
    ctx = BatchContext()
    ValidateStage(MediaLimits(), frozenset({"train"})).process(work_table(records), ctx)
    assert set(ctx.decoded) == {("id-0000", "images", 0)}
    assert ctx.decoded[("id-0000", "images", 0)].ndim == 3


def test_validate_leaves_the_samples_of_plain_pcm_clips_for_the_audio_ops() -> None:
    from pipeline.record.media import decode_audio

    wav = {"bytes": audio_bytes("WAV"), "path": "a.wav"}
    messages = [
        {"role": "user", "content": "<image> <audio> hello"},
        {"role": "assistant", "name": None, "content": "answer"},
    ]
    records = [
        work_record(0, split="train", audios=[wav], messages=messages),
        work_record(1, split="test", audios=[wav], messages=messages),
    ]
    ctx = BatchContext()
    ValidateStage(MediaLimits(), keep_samples_of=frozenset({"train"})).process(
        work_table(records), ctx
    )
    assert set(ctx.decoded) == {("id-0000", "audios", 0)}  # no pixels: no image ops
    samples, rate = ctx.decoded[("id-0000", "audios", 0)]
    expected, expected_rate = decode_audio(wav["bytes"])
    assert (samples == expected).all() and rate == expected_rate


def test_dedup_key_ignores_surrounding_whitespace_but_not_media_bytes() -> None:
    base = work_record(0)
    spaced = work_record(
        1, messages=[dict(m, content=f"  {m['content']} ") for m in base["messages"]]
    )
    spaced["images"] = base["images"]
    other_image = work_record(2, messages=base["messages"])
    other_image["images"] = [{"bytes": image_bytes("PNG", 8, 99), "path": "images/0.png"}]
    keys = DedupStage().keys(work_table([base, spaced, other_image]))
    assert keys[0] == keys[1]
    assert keys[2] != keys[0]


def test_duplicates_keep_the_smallest_id_of_each_key() -> None:
    index = pa.table({"id": ["c", "a", "b", "d", "e"], "key": ["k1", "k1", "k2", "k1", "k2"]})
    assert sorted(DedupStage.duplicate_ids(index).to_pylist()) == ["c", "d", "e"]
    table = work_table([work_record(i, id=i_d) for i, i_d in enumerate("abcde")])
    kept = DedupStage().process(table.append_column("key", index.sort_by("id")["key"]), None)
    assert kept.table["id"].to_pylist() == ["a", "b"]
    assert kept.stats == {"duplicates": 3}


def test_dedup_computes_the_keys_of_records_that_carry_none() -> None:
    table = work_table([work_record(1), work_record(1, id="id-0002"), work_record(3)])
    kept = DedupStage().process(table, BatchContext()).table
    assert kept["id"].to_pylist() == ["id-0001", "id-0003"]


def _planned(config: SplitConfig, seed: int, table: pa.Table) -> SplitStage:
    stage = SplitStage(config, seed)
    return stage.planned(stage.group_keys(table))


def _split(stage: SplitStage, table: pa.Table) -> pa.Table:
    return stage.process(table, BatchContext()).table


def test_split_is_a_pure_function_of_seed_and_groups_with_the_configured_fractions() -> None:
    config = SplitConfig(validation=0.2, test=0.1)
    table = work_table([work_record(i) for i in range(600)])
    splits = _split(_planned(config, 3, table), table)["split"].to_pylist()
    assert splits == _split(_planned(config, 3, table), table)["split"].to_pylist()
    assert Counter(splits) == {"train": 420, "validation": 120, "test": 60}  # cut by count
    other_seed = _split(_planned(config, 4, table), table)
    assert other_seed["split"].to_pylist() != splits


def test_every_requested_split_gets_a_group_once_there_are_groups_for_each() -> None:
    config = SplitConfig(validation=0.1, test=0.1)
    for n in range(1, 13):
        table = work_table([work_record(i) for i in range(n)])
        for seed in range(5):
            stage = _planned(config, seed, table)
            got = Counter(_split(stage, table)["split"].to_pylist())
            assert got == {k: v for k, v in stage.plan.groups.items() if v}
            if n >= 3:
                assert got["validation"] >= 1 and got["test"] >= 1 and got["train"] >= 1
            else:
                assert got == {"train": n}
    assert split_counts(10, 0.1, 0.0) == (1, 0)
    assert split_counts(2, 0.1, 0.1) == (0, 0)
    assert split_counts(3, 0.4, 0.4) == (1, 1)


def test_adding_a_group_moves_at_most_one_existing_group_across_each_cut() -> None:
    config = SplitConfig(validation=0.2, test=0.1)
    stage = SplitStage(config, seed=7)
    keys = [f"conversation:r{i}" for i in range(60)]
    previous = None
    for n in range(1, len(keys) + 1):
        planned = stage.planned(keys[:n])
        now = {k: planned.split_of(k) for k in keys[:n]}
        if previous is not None:
            moved = [k for k in previous if previous[k] != now[k]]
            # Two cuts on the hash line, each shifting by at most one rank.
            assert len(moved) <= 2, (n, moved)
        previous = now


def test_a_split_without_a_plan_refuses_to_guess() -> None:
    with pytest.raises(RuntimeError, match="plan"):
        SplitStage(SplitConfig(), seed=0).split_of("conversation:x")


def test_split_by_character_holds_out_whole_characters() -> None:
    config = SplitConfig(by="character", validation=0.3, test=0.3)
    records = [
        work_record(
            i, character={"name": f"c{i % 12}", "profile": "", "greeting": "", "catchphrases": []}
        )
        for i in range(120)
    ]
    table = work_table(records)
    stage = _planned(config, 1, table)
    assert stage.plan.groups == {"train": 4, "validation": 4, "test": 4}
    table = _split(stage, table)
    per_character: dict[str, set[str]] = {}
    for row in table.select(["character", "split"]).to_pylist():
        per_character.setdefault(row["character"]["name"], set()).add(row["split"])
    assert all(len(s) == 1 for s in per_character.values())
    assert len({next(iter(s)) for s in per_character.values()}) == 3


class _FakeAugmenter:
    """Two variants per record; raises on records whose id ends in 'boom'."""

    def variants(
        self, record: dict[str, Any], decoded: Any = None, encoded: Any = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        if record["id"].endswith("boom"):
            raise RuntimeError("op exploded")
        out = []
        for copy in range(2):
            out.append(
                {
                    **record,
                    "id": variant_id(record["id"], "h", copy),
                    "parent_id": record["id"],
                    "split": None,  # the stage must force the parent's split
                    "augmentation": {"recipe_hash": "h", "copy": copy, "seed": 1, "ops": []},
                }
            )
        return out, AugmentStats(variants=2)


def test_augment_adds_variants_to_train_only_and_a_failing_augmenter_keeps_the_original() -> None:
    records = [
        work_record(0, split="train"),
        work_record(1, split="validation"),
        work_record(2, split="test"),
        work_record(3, split="train", id="id-boom"),
    ]
    ctx = BatchContext()
    result = AugmentStage(_FakeAugmenter()).process(work_table(records), ctx)
    rows = result.table.select(["id", "parent_id", "split"]).to_pylist()
    originals = [r["id"] for r in rows if r["parent_id"] is None]
    variants = [r for r in rows if r["parent_id"] is not None]
    assert originals == ["id-0000", "id-0001", "id-0002", "id-boom"]
    assert {r["parent_id"] for r in variants} == {"id-0000"}
    assert all(r["split"] == "train" for r in variants) and len(variants) == 2
    assert result.rejects == [] and result.stats == {"variants": 2}
    assert result.detail.variants == 2 and result.detail.failed_variants == 1
    assert ctx.facts[("id-0000", "augment")].variants == 2


def test_records_to_table_makes_the_same_table_in_whichever_pool_it_is_given() -> None:
    records = [work_record(i, split="train", source_ref=None) for i in range(3)]
    expected = pa.Table.from_pydict(
        {f.name: [r.get(f.name) for r in records] for f in WORK_SCHEMA}, schema=WORK_SCHEMA
    )
    pool = pa.system_memory_pool()  # the augment stage's, for its variants
    before = pool.bytes_allocated()
    table = records_to_table(records, WORK_SCHEMA, pool)
    assert table.equals(expected) and table.schema.equals(expected.schema, check_metadata=True)
    media = sum(len(r["images"][0]["bytes"]) for r in records)
    assert pool.bytes_allocated() - before >= media, "the media bytes live in the pool given"


@pytest.mark.parametrize(("limit", "kept"), [(1.05, 0), (1.2, 1)])
def test_a_variant_is_held_to_the_limits_by_what_its_encoder_wrote(limit: float, kept: int) -> None:
    from augmenters import RecordAugmenter
    from augmenters.config import AugmentConfig

    # A 1.0 s clip; SpeedPerturb 0.9 writes a 1.11 s one.
    clip = {"bytes": audio_bytes("WAV", 1.0, 8000), "path": "a.wav"}
    record = work_record(
        0,
        split="train",
        images=[],
        audios=[clip],
        messages=[
            {"role": "user", "name": None, "content": "<audio> listen"},
            {"role": "assistant", "name": None, "content": "I hear it"},
        ],
    )
    augment = AugmentConfig(copies=1, audio=[{"op": "SpeedPerturb", "factors": [0.9]}])
    stage = AugmentStage(RecordAugmenter(augment, 3, "h"), MediaLimits(max_audio_seconds=limit))
    encoded: dict[int, Any] = {}
    variants, _ = stage.augmenter.variants(record, None, encoded)
    [info] = encoded.values()
    assert (info.format, info.samplerate, info.frames) == ("FLAC", 8000, 8889)
    assert id(variants[0]["audios"][0]["bytes"]) in encoded

    result = stage.process(work_table([record]), BatchContext())

    assert result.table.num_rows == 1 + kept
    assert result.detail.dropped_variants == 1 - kept


def test_the_record_pass_writes_its_part_and_quarantine_and_counts_each_stage_in_run_order(
    tmp_path,
) -> None:
    from pipeline.execution.passes import PassContext, PassTask, Slice, record_pass
    from pipeline.store.quarantine import read_quarantine_part
    from pipeline.store.staging import read_part

    with PartWriter(str(tmp_path / "in"), WORK_SCHEMA, 1 << 20) as parts:
        records = [work_record(0), work_record(1, images=[]), work_record(2), work_record(3)]
        parts.write(work_table(records))
    splitter = SplitStage(SplitConfig(validation=0, test=0), 0).planned(
        [f"conversation:id-000{i}" for i in range(4)]
    )
    context = PassContext(
        fs=LocalFS(),
        stages=[splitter, ValidateStage(MediaLimits()), AugmentStage(_FakeAugmenter())],
        skip_ids=pa.array(["id-0003"]),
        batch_size=2,
    )
    out_path = str(tmp_path / "out" / "part.arrow")
    task = PassTask([Slice(parts.paths[0], 0, 4)], out_path, str(tmp_path / "q" / "r.jsonl"))
    outcome = record_pass(task, context)
    assert list(outcome.tallies) == ["split", "validate", "augment"]
    assert [(t.records_in, t.out, t.quarantined) for t in outcome.tallies.values()] == [
        (3, 3, 0),
        (3, 2, 1),
        (2, 6, 0),
    ]
    assert outcome.quarantine.reasons == {"placeholder_mismatch": 1}
    assert [e.record_id for e in read_quarantine_part(outcome.quarantine, LocalFS())] == ["id-0001"]
    rows = outcome.rows.to_pylist()
    assert [r["id"] for r in rows if r["parent_id"] is None] == ["id-0000", "id-0002"]
    assert outcome.stats.variants == 4
    assert set(outcome.rows.column_names) == {
        "split",
        "id",
        "parent_id",
        "part",
        "row",
        "nbytes",
        "stats",
        "row_sha256",  # null here: the shard writer fills it, for the cache (shard reuse)
    }
    assert outcome.rows["row_sha256"].null_count == outcome.rows.num_rows
    written = read_part(out_path)
    assert written.take(outcome.rows["row"])["id"].to_pylist() == outcome.rows["id"].to_pylist()


def test_a_record_pass_that_rejects_nothing_writes_no_quarantine_part(tmp_path) -> None:
    from pipeline.execution.passes import PassContext, PassTask, Slice, record_pass

    with PartWriter(str(tmp_path / "in"), WORK_SCHEMA, 1 << 20) as parts:
        parts.write(work_table([work_record(0)]))
    context = PassContext(LocalFS(), [ValidateStage(MediaLimits())], pa.array([], pa.string()), 8)
    quarantine = tmp_path / "q.jsonl"
    task = PassTask([Slice(parts.paths[0], 0, 1)], str(tmp_path / "o.arrow"), str(quarantine))
    outcome = record_pass(task, context)
    assert outcome.quarantine is None and not quarantine.exists()
    assert outcome.rows["id"].to_pylist() == ["id-0000"]
