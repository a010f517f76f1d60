"""Train / validation / test assignment by hashing a group key with the seed."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.recipe import SplitConfig
from pipeline.record.ids import canonical_json
from pipeline.stages.base import StageResult


class SplitStage:
    """Assigns train/validation/test by hashing a group key with the seed."""

    name = "split"

    def __init__(self, config: SplitConfig, seed: int):
        self.config = config
        self.seed = seed

    def group_key(self, record_id: str, character_name: str | None) -> str:
        """Return what is held out together: the conversation, or the whole character."""
        if self.config.by == "character" and character_name:
            return "character:" + character_name
        return "conversation:" + record_id

    def split_of(self, group_key: str) -> str:
        """Return the split of a group key: a fixed point in [0, 1) cut by the fractions."""
        payload = canonical_json(["split", self.seed, group_key]).encode("utf-8")
        u = int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") / 2**64
        if u < self.config.validation:
            return "validation"
        if u < self.config.validation + self.config.test:
            return "test"
        return "train"

    def apply(self, table: pa.Table) -> StageResult:
        ids = table["id"].to_pylist()
        names = pc.struct_field(table["character"], "name").to_pylist()
        splits = [self.split_of(self.group_key(i, n)) for i, n in zip(ids, names, strict=True)]
        column = table.schema.get_field_index("split")
        return StageResult(table.set_column(column, "split", pa.array(splits, pa.string())))
