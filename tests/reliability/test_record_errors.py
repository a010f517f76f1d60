"""A record-level error inside a record-pass task costs that record's variants (or, at
validation, the record, quarantined as stage_error), never the task: its neighbours are
written and the run goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from augmenters.stats import AugmentStats
from pipeline.execution.passes import PassContext, Slice, record_pass
from pipeline.recipe import MediaLimits, SplitConfig
from pipeline.record.ids import variant_id
from pipeline.record.schema import WORK_SCHEMA
from pipeline.stages.split import SplitStage
from pipeline.store.fs import LocalFS
from pipeline.store.staging import PartWriter, read_part
from tests.pipeline.execution.datajob_corpus import work_record, work_table


class _HostileAugmenter:
    """One variant per record: for id-0001 a variant whose speaker names are numbers (an op
    bug that Arrow cannot store), for id-0002 an op that raises; the others are fine."""

    def variants(self, record: dict[str, Any], decoded: Any = None):
        if record["id"] == "id-0002":
            raise RuntimeError("op exploded")
        variant = {
            **record,
            "id": variant_id(record["id"], "h", 0),
            "parent_id": record["id"],
            "augmentation": {"recipe_hash": "h", "copy": 0, "seed": 1, "ops": []},
        }
        if record["id"] == "id-0001":
            variant["messages"] = [{**m, "name": 42} for m in record["messages"]]
        return [variant], AugmentStats(variants=1)


def test_a_broken_variant_or_a_raising_op_costs_only_that_records_variants(
    tmp_path: Path,
) -> None:
    records = [work_record(i, images=[]) for i in range(4)]
    for r in records:
        r["messages"][0]["content"] = r["messages"][0]["content"].replace("<image>", "").strip()
    with PartWriter(str(tmp_path / "in"), WORK_SCHEMA, 1 << 20) as parts:
        parts.write(work_table(records))
    splitter = SplitStage(SplitConfig(validation=0, test=0), 0).planned(
        [f"conversation:id-000{i}" for i in range(4)]
    )
    context = PassContext(
        fs=LocalFS(),
        limits=MediaLimits(),
        duplicate_ids=pa.array([], pa.string()),
        splitter=splitter,
        augmenter=_HostileAugmenter(),
        batch_size=4,
    )
    out_path = str(tmp_path / "out" / "part.arrow")

    outcome = record_pass([Slice(parts.paths[0], 0, 4)], out_path, context)

    ids = outcome.rows["id"].to_pylist()
    originals = [
        i for i, p in zip(ids, outcome.rows["parent_id"].to_pylist(), strict=True) if p is None
    ]
    assert originals == ["id-0000", "id-0001", "id-0002", "id-0003"]  # 0 lost
    parents = {p for p in outcome.rows["parent_id"].to_pylist() if p}
    assert parents == {"id-0000", "id-0003"}
    assert outcome.stats.dropped_variants == 1 and outcome.stats.failed_variants == 1
    assert outcome.rejected == []
    written = read_part(out_path)  # 0 corrupt: what the index names is what was written
    assert written.take(outcome.rows["row"])["id"].to_pylist() == ids
