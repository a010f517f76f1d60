"""Variants as records: valid canonical records, only applied ops listed, empty ones counted, stats summed."""

from __future__ import annotations

import json

from augmenters import merge_stats
from pipeline.recipe import MediaLimits
from pipeline.record.schema import WORK_SCHEMA, records_to_table
from pipeline.stages.validate import validate_record
from tests.augmenters.conftest import make_augmenter, make_record
from tests.augmenters.test_determinism import FULL


def test_variants_are_valid_canonical_records_that_fit_the_schema():
    variants, stats = make_augmenter(seed=21, **FULL).variants(make_record())
    assert variants and stats["variants"] == len(variants)
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
    assert stats["empty_variants"] == 3 and stats["variants"] == 0


def test_no_copies_means_no_work():
    variants, stats = make_augmenter(copies=0, text=[{"op": "KeyboardAug"}]).variants(make_record())
    assert variants == [] and stats["variants"] == 0 and stats["empty_variants"] == 0


def test_merge_stats_sums_nested_counters():
    a = {
        "variants": 2,
        "empty_variants": 1,
        "text_skipped": 0,
        "ops": {"text:KeyboardAug": {"applied": 2, "skipped": 1}},
    }
    b = {
        "variants": 1,
        "empty_variants": 0,
        "text_skipped": 3,
        "ops": {
            "text:KeyboardAug": {"applied": 1, "skipped": 0},
            "image:HorizontalFlip": {"applied": 1, "skipped": 0},
        },
    }
    assert merge_stats(a, b) == {
        "variants": 3,
        "empty_variants": 1,
        "text_skipped": 3,
        "ops": {
            "text:KeyboardAug": {"applied": 3, "skipped": 1},
            "image:HorizontalFlip": {"applied": 1, "skipped": 0},
        },
    }


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
