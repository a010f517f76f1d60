"""A record-level error inside the augment stage costs that record's variants, never the
batch: its neighbours are kept and the run goes on."""

from __future__ import annotations

from typing import Any

from augmenters.stats import AugmentStats
from pipeline.recipe import MediaLimits
from pipeline.record.ids import variant_id
from pipeline.record.schema import WORK_SCHEMA
from pipeline.stages.augment import AugmentStage
from pipeline.stages.base import BatchContext
from tests.pipeline.execution.datajob_corpus import work_record, work_table


class _HostileAugmenter:
    """One variant per record: for id-0001 a variant whose speaker names are numbers (an op
    bug that Arrow cannot store), for id-0002 an op that raises; the others are fine."""

    def variants(self, record: dict[str, Any], decoded: Any = None, encoded: Any = None):
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


def test_a_broken_variant_or_a_raising_op_costs_only_that_records_variants() -> None:
    records = [work_record(i, images=[]) for i in range(4)]
    for r in records:
        r["messages"][0]["content"] = r["messages"][0]["content"].replace("<image>", "").strip()
        r["split"] = "train"
    batch = work_table(records)
    stage = AugmentStage(_HostileAugmenter(), MediaLimits())

    output = stage.process(batch, BatchContext())

    ids = output.table["id"].to_pylist()
    originals = [
        i for i, p in zip(ids, output.table["parent_id"].to_pylist(), strict=True) if p is None
    ]
    assert originals == ["id-0000", "id-0001", "id-0002", "id-0003"]  # 0 lost
    parents = {p for p in output.table["parent_id"].to_pylist() if p}
    assert parents == {"id-0000", "id-0003"}
    assert output.detail.dropped_variants == 1 and output.detail.failed_variants == 1
    assert output.rejects == []
    # 0 corrupt: the table holds the canonical schema, every variant names its parent.
    assert output.table.schema.equals(WORK_SCHEMA, check_metadata=False)
