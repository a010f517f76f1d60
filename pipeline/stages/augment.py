"""The augment stage: `copies` variants per train record, checked against their parent."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from augmenters.stats import AugmentStats
from pipeline.record.schema import (
    AUDIO_PLACEHOLDER,
    IMAGE_PLACEHOLDER,
    count_placeholders,
    records_to_table,
)
from pipeline.stages.base import StageResult

log = logging.getLogger(__name__)


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

    @property
    def decodes_images(self) -> bool:
        """True when the augmenter works on image pixels (so validation should keep them)."""
        ops = getattr(self.augmenter, "ops", None) or {}
        return bool(ops.get("image"))

    def record_variants(
        self, record: dict[str, Any], decoded: dict[tuple[str, int], Any] | None = None
    ) -> tuple[list[dict[str, Any]], AugmentStats]:
        """Return the checked variants of one train record and their stats.

        A valid original is never lost to an op that fails on it: its variants are skipped
        and counted (`failed_variants`), and its neighbours carry on.
        """
        try:
            if decoded is None:
                produced, stats = self.augmenter.variants(record)
            else:
                produced, stats = self.augmenter.variants(record, decoded)
            return self._checked_variants(record, produced), stats
        except Exception as exc:
            log.warning("augment: no variants of %s: %s: %s", record["id"], type(exc).__name__, exc)
            return [], AugmentStats(failed_variants=1)

    def apply(self, table: pa.Table) -> StageResult:
        if self.augmenter is None:
            return StageResult(table)
        is_train = pc.fill_null(pc.equal(table["split"], "train"), False).to_numpy(
            zero_copy_only=False
        )
        train_rows = np.nonzero(is_train)[0]
        variants: list[dict[str, Any]] = []
        stats = AugmentStats()
        records = table.take(pa.array(train_rows, pa.int64())).to_pylist()
        # The augmenter may offer one scope for a batch of records (it saves and restores
        # global RNG states once instead of per record).
        batch_scope = getattr(self.augmenter, "batch", contextlib.nullcontext)
        with batch_scope():
            for record in records:
                produced, record_stats = self.record_variants(record)
                variants.extend(produced)
                stats.merge(record_stats)
        out = table
        if variants:
            out = pa.concat_tables([table, records_to_table(variants, table.schema)])
        return StageResult(out, [], stats)
