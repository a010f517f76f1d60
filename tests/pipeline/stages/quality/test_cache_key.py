"""The quality part of a record's cache key moves exactly when its quality output can."""

from __future__ import annotations

from pipeline.stages.quality.cache_key import quality_key_part
from pipeline.stages.quality.config import NearDupConfig, QualityConfig
from pipeline.stages.quality.planner import plan_near_duplicates
from pipeline.stages.quality.signatures import near_dup_signatures

from .corpus import clean_chinese, clean_pippa, table
from .test_near_dup import _edited


def _plan(*records):
    cfg = NearDupConfig()
    return plan_near_duplicates(near_dup_signatures(table(*records), cfg), cfg)


def test_the_key_follows_settings_processor_held_out_files_and_the_records_plan_entry():
    config = QualityConfig()
    alone = _plan(clean_pippa("a"), clean_chinese("c"))
    paired = _plan(clean_pippa("a"), _edited("b"), clean_chinese("c"))
    base = quality_key_part(config, "a", alone)
    assert base == quality_key_part(QualityConfig(), "a", alone)
    assert quality_key_part(config, "a", paired) != base  # a near-copy of it arrived
    assert quality_key_part(config, "c", paired) == quality_key_part(config, "c", alone)
    assert quality_key_part(QualityConfig(slop={"min_hits": 3}), "a", alone) != base
    assert quality_key_part(config, "a", alone, processor_hash="x") != base
    assert quality_key_part(config, "a", alone, held_out_sha256=["ab"]) != base
    assert quality_key_part(None, "a", alone) is None
