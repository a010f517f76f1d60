"""Variants as records: valid canonical records, only applied ops listed, empty ones counted, stats summed."""

from __future__ import annotations

import json

from augmenters.stats import AugmentStats, OpCounts
from pipeline.recipe import MediaLimits
from pipeline.record.schema import WORK_SCHEMA, records_to_table
from pipeline.stages.validate import validate_record
from tests.augmenters.conftest import make_augmenter, make_record
from tests.augmenters.test_determinism import FULL


def test_variants_are_valid_canonical_records_that_fit_the_schema():
    variants, stats = make_augmenter(seed=21, **FULL).variants(make_record())
    assert variants and stats.variants == len(variants)
    for v in variants:
        validate_record(v, MediaLimits())
        for entry in v["augmentation"]["ops"]:
            assert entry["modality"] in ("dialogue", "text", "image", "audio")
            assert isinstance(json.loads(entry["params"]), dict)
    table = records_to_table(variants, WORK_SCHEMA)
    assert table.num_rows == len(variants)


def test_an_op_that_never_fires_yields_no_variant_only_a_count():
    variants, stats = make_augmenter(copies=3, text=[{"op": "KeyboardAug", "p": 0.0}]).variants(
        make_record()
    )
    assert variants == []
    assert stats.empty_variants == 3 and stats.variants == 0


def test_no_copies_means_no_work():
    variants, stats = make_augmenter(copies=0, text=[{"op": "KeyboardAug"}]).variants(make_record())
    assert variants == [] and stats.variants == 0 and stats.empty_variants == 0


def test_stats_merge_sums_every_counter_and_keeps_ops_in_first_seen_order():
    a = AugmentStats(variants=2, empty_variants=1, ops={"text:KeyboardAug": OpCounts(2, 1)})
    b = AugmentStats(
        variants=1,
        text_skipped=3,
        flip_guard_skipped=2,
        ops={"image:HorizontalFlip": OpCounts(1, 0), "text:KeyboardAug": OpCounts(1, 0)},
    )
    a.merge(b)
    assert a == AugmentStats(
        variants=3,
        empty_variants=1,
        text_skipped=3,
        flip_guard_skipped=2,
        ops={"text:KeyboardAug": OpCounts(3, 1), "image:HorizontalFlip": OpCounts(1, 0)},
    )
    assert list(a.ops) == ["text:KeyboardAug", "image:HorizontalFlip"]
    assert b.ops["text:KeyboardAug"] == OpCounts(1, 0), "the merged-in stats stay as they were"


def test_stats_survive_the_json_round_trip_of_a_side_message():
    stats = AugmentStats(variants=4, flip_guard_swapped=1)
    stats.count("text", "KeyboardAug", "applied")
    stats.count("text", "KeyboardAug", "skipped")
    stats.count("audio", "Gain", "applied")
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["ops"] == {
        "text:KeyboardAug": {"applied": 1, "skipped": 1},
        "audio:Gain": {"applied": 1, "skipped": 0},
    }
    assert AugmentStats.from_dict(data) == stats


def test_replay_refuses_an_augmentation_from_another_recipe():
    import pytest

    record = make_record()
    variants, _ = make_augmenter(
        recipe_hash="a" * 64, copies=1, image=[{"op": "HorizontalFlip", "p": 1.0}]
    ).variants(record)
    other = make_augmenter(
        recipe_hash="b" * 64, copies=1, image=[{"op": "HorizontalFlip", "p": 1.0}]
    )
    with pytest.raises(ValueError, match="made by recipe aaaaaaaaaaaa"):
        other.replay(record, variants[0]["augmentation"])
