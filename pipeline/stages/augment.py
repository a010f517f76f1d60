"""The augment stage: `copies` variants per train record, checked against their parent."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from augmenters.stats import AugmentStats
from pipeline.recipe import MediaLimits
from pipeline.record.schema import (
    AUDIO_PLACEHOLDER,
    IMAGE_PLACEHOLDER,
    count_placeholders,
    records_to_table,
)
from pipeline.stages.base import BatchContext, StageOutput
from pipeline.stages.quality.column import inherited
from pipeline.stages.validate import ValidateStage

log = logging.getLogger(__name__)

# Validation's decoded media, by record field, go to the augmenter under these keys
# (`RecordAugmenter.variants`): pixels as "image", a clip's (samples, rate) as "samples".
_DECODED_KEYS = {"images": "image", "audios": "samples"}


class AugmentStage:
    """Adds `copies` variants per train record; validation and test pass through untouched."""

    name = "augment"

    def __init__(self, augmenter: Any | None, limits: MediaLimits | None = None):
        # `augmenter` has .variants(record, decoded, encoded) -> (variants, stats), as
        # `augmenters.RecordAugmenter`; None when copies is 0.
        self.augmenter = augmenter
        # Variants are held to the originals' limits and invariants, checked after
        # augmentation: an op can change a clip's length (SpeedPerturb 0.9 makes 587 s into
        # 653 s), and validation only saw the original.
        self.check = ValidateStage(limits) if limits is not None else None

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
        return self._has_ops("image")

    @property
    def decodes_audio(self) -> bool:
        """True when the augmenter works on audio samples (so validation should keep them)."""
        return self._has_ops("audio")

    def _has_ops(self, modality: str) -> bool:
        # From the recipe's ops, not the built ones: building them imports their libraries,
        # and the driver asks this when it builds the stages it sends to the tasks.
        config = getattr(self.augmenter, "augment", None)
        if config is not None:
            return bool(getattr(config, modality))
        ops = getattr(self.augmenter, "ops", None) or {}
        return bool(ops.get(modality))

    def record_variants(
        self,
        record: dict[str, Any],
        media: dict[tuple[str, int], Any] | None = None,
        headers: BatchContext | None = None,
    ) -> tuple[list[dict[str, Any]], AugmentStats]:
        """Return the checked variants of one train record and their stats; `media` holds
        its images' pixels and its clips' (samples, rate) already decoded, by ("images" or
        "audios", index) (validation's decode); `headers` keeps the header facts of the
        variants' media (`validate_record`).

        A valid original is never lost to an op that fails on it: its variants are skipped
        and counted (`failed_variants`), and its neighbours carry on.
        """
        # What the variants' encoders wrote, by the id of its bytes: held to the limits as is.
        encoded: dict[int, Any] = {}
        try:
            # The augmenter finds a decoded item by the identity of its bytes object.
            decoded = {
                (_DECODED_KEYS[kind], id(record[kind][i]["bytes"])): value
                for (kind, i), value in (media or {}).items()
            }
            produced, stats = self.augmenter.variants(record, decoded, encoded)
            checked = self._checked_variants(record, produced)
        except Exception as exc:
            log.warning("augment: no variants of %s: %s: %s", record["id"], type(exc).__name__, exc)
            return [], AugmentStats(failed_variants=1)
        return self._within_limits(checked, stats, encoded, headers), stats

    def _within_limits(
        self,
        variants: list[dict[str, Any]],
        stats: AugmentStats,
        encoded: dict[int, Any],
        headers: BatchContext | None = None,
    ) -> list[dict[str, Any]]:
        """Return the variants that hold every invariant and limit; a variant that fails is
        dropped and counted (`dropped_variants`), its original and siblings stay."""
        if self.check is None:
            return variants
        kept = []
        for variant in variants:
            # Its media are the original's validated bytes or what our encoders just wrote
            # from pixels and samples: decoding them again proves nothing new (it cost ~20%
            # of the pass: a FLAC decode per variant clip), and what was written is held to
            # the limits from the arrays it was written from (parsing its header cost ~1 ms
            # a record).
            entry = self.check.rejection(variant, headers_only=True, known=encoded, headers=headers)
            if entry is None:
                kept.append(variant)
                continue
            stats.dropped_variants += 1
            log.info("variant %s dropped: %s: %s", variant.get("id"), entry.reason, entry.message)
        return kept

    def process(self, batch: pa.Table, ctx: BatchContext) -> StageOutput:
        """Return `batch` followed by the variants of its train records. Each augmented
        original's AugmentStats goes to `ctx.facts[(id, "augment")]`; their sum is `detail`
        and the variants are counted in `stats`."""
        stats = AugmentStats()
        out = StageOutput(batch, detail=stats)
        if self.augmenter is None:
            return out
        is_train = pc.fill_null(pc.equal(batch["split"], "train"), False).to_numpy(
            zero_copy_only=False
        )
        train_rows = np.nonzero(is_train)[0]
        if len(train_rows) == 0:
            return out
        variants: list[dict[str, Any]] = []
        # The rows validation converted are reused; a take of the train rows would copy
        # their media buffers only to find them by id.
        rows = ctx.rows(batch)
        records = [rows[i] for i in train_rows]
        # One save/restore of the global RNG states for the batch instead of one per record.
        batch_scope = getattr(self.augmenter, "batch", contextlib.nullcontext)
        with batch_scope():
            for record in records:
                rid = record["id"]
                media = {
                    (kind, i): ctx.decoded[(rid, kind, i)]
                    for kind in _DECODED_KEYS
                    for i in range(len(record.get(kind) or []))
                    if (rid, kind, i) in ctx.decoded
                }
                produced, record_stats = self.record_variants(record, media, ctx)
                variants.extend(produced)
                stats.merge(record_stats)
                ctx.facts[(rid, self.name)] = record_stats
        if variants:
            if "quality" in batch.column_names:
                # The rows were converted before the quality stages wrote their findings.
                ids, found = batch["id"].to_pylist(), batch["quality"].to_pylist()
                found_of = dict(zip(ids, found, strict=True))
                for variant in variants:
                    variant["quality"] = inherited(found_of.get(variant["parent_id"]))
            # In the C allocator's pool (glibc, held to `cluster.WORKER_ENV`'s thresholds),
            # not Arrow's default: mimalloc purges the pages a batch's variants freed after
            # 10 ms, so in a Ray worker every batch faulted its media copies in afresh
            # (27-39 minor faults a record); variants to Arrow took 0.66-0.73 -> 0.17-0.19
            # ms of worker CPU a record at 2,000 records on 2 workers, what it takes in one
            # long in-process pass (benchmarks/record_pass.py --steps).
            variants_table = records_to_table(variants, batch.schema, pa.system_memory_pool())
            out.table = pa.concat_tables([batch, variants_table])
            out.stats["variants"] = len(variants)
            # A later stage of the batch (the token ledger) reads the variants as written,
            # without converting their media bytes back out of Arrow.
            for variant in variants:
                ctx.records[variant["id"]] = variant
        return out
