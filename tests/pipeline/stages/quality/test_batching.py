"""Quality output does not depend on how records are batched (1 worker or N: same content_id)."""

from __future__ import annotations

import pyarrow as pa

from pipeline.stages.base import BatchContext
from pipeline.stages.quality.config import QualityConfig
from pipeline.stages.quality.planner import plan_near_duplicates
from pipeline.stages.quality.signatures import near_dup_signatures
from pipeline.stages.quality.stages import quality_stages

from .corpus import clean_chinese, clean_pippa, record, table
from .test_near_dup import _edited


def _run(batches: list[pa.Table], config: QualityConfig) -> pa.Table:
    sigs = pa.concat_tables([near_dup_signatures(b, config.near_dup) for b in batches])
    plan = plan_near_duplicates(sigs, config.near_dup)
    outs = []
    for batch in batches:
        for stage in quality_stages(config, plan):
            batch = stage.process(batch, BatchContext()).table
        outs.append(batch)
    return pa.concat_tables(outs).sort_by("id")


def test_one_batch_and_one_record_per_batch_give_the_same_rows():
    records = [
        clean_pippa("a"),
        _edited("b"),
        clean_chinese("c"),
        record("d", [("user", "Who goes there?"), ("assistant", "Welcome, {{user}}! Sit.")]),
        record(
            "e",
            [
                ("user", "Tell me."),
                ("assistant", "Barely above a whisper, a shiver ran down her spine."),
            ],
        ),
    ]
    config = QualityConfig(near_dup={"action": "keep_one"}, unresolved_macro={"policy": "flag"})
    whole = _run([table(*records)], config)
    single = _run([table(r) for r in records], config)
    assert whole.equals(single)
    flags = dict(zip(whole["id"].to_pylist(), whole["quality"].to_pylist(), strict=True))
    assert "unresolved_macro" in flags["d"]["flags"] and "slop" in flags["e"]["flags"]
    assert whole["id"].to_pylist() == ["a", "c", "d", "e"]  # b is a near-copy of a
