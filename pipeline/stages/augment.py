"""The augment stage: `copies` variants per train record, checked against their parent."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from augmenters.stats import AugmentStats
from pipeline.record.rejection import QuarantineEntry, quarantine_entry
from pipeline.record.schema import (
    AUDIO_PLACEHOLDER,
    IMAGE_PLACEHOLDER,
    count_placeholders,
    records_to_table,
)
from pipeline.stages.base import StageResult


class AugmentStage:
    """Adds `copies` variants per train record; validation and test pass through untouched."""

    name = "augment"

    def __init__(self, augmenter: Any | None):
        # `augmenter` has .variants(record) -> (variants, stats); None when copies is 0.
        self.augmenter = augmenter

    def _checked_variants(
        self, record: dict[str, Any], variants: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        checked = []
        for variant in variants:
            variant = dict(variant)
            if variant.get("parent_id") != record["id"]:
                raise ValueError(f"variant {variant.get('id')} does not name its parent")
            # Inheriting the parent's split is what keeps evaluation data out of training.
            variant["split"] = record["split"]
            variant.setdefault("source_ref", record.get("source_ref"))
            for placeholder, key in ((IMAGE_PLACEHOLDER, "images"), (AUDIO_PLACEHOLDER, "audios")):
                found = count_placeholders(variant.get("messages") or [], placeholder)
                if found != len(variant.get(key) or []):
                    raise ValueError(
                        f"variant {variant.get('id')}: {found} {placeholder} but "
                        f"{len(variant.get(key) or [])} {key}"
                    )
            checked.append(variant)
        return checked

    def apply(self, table: pa.Table) -> StageResult:
        if self.augmenter is None:
            return StageResult(table)
        is_train = pc.fill_null(pc.equal(table["split"], "train"), False).to_numpy(
            zero_copy_only=False
        )
        train_rows = np.nonzero(is_train)[0]
        keep = np.ones(table.num_rows, dtype=bool)
        variants: list[dict[str, Any]] = []
        rejected: list[QuarantineEntry] = []
        stats = AugmentStats()
        records = table.take(pa.array(train_rows, pa.int64())).to_pylist()
        # The augmenter may offer one scope for a batch of records (it saves and restores
        # global RNG states once instead of per record).
        batch_scope = getattr(self.augmenter, "batch", contextlib.nullcontext)
        with batch_scope():
            for row, record in zip(train_rows, records, strict=True):
                try:
                    produced, record_stats = self.augmenter.variants(record)
                    produced = self._checked_variants(record, produced)
                except Exception as exc:  # one record's failure never takes its batch down
                    keep[row] = False
                    message = f"{type(exc).__name__}: {exc}"
                    rejected.append(quarantine_entry(self.name, record, "augment_error", message))
                    continue
                variants.extend(produced)
                stats.merge(record_stats)
        originals = table.filter(pa.array(keep))
        if variants:
            produced_table = records_to_table(variants, table.schema)
            originals = pa.concat_tables([originals, produced_table])
        return StageResult(originals, rejected, stats)
