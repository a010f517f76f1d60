"""Variants are held to the same limits and invariants as their originals, checked after
augmentation: an op can change a clip's length (SpeedPerturb 0.9 makes 587 s into 653 s) or
a record's media, and validation only saw the original. A variant that fails is dropped and
counted (`dropped_variants`); its original and the other variants stay."""

from __future__ import annotations

import logging
from typing import Any

from augmenters.stats import AugmentStats
from pipeline.stages.validate import ValidateStage

log = logging.getLogger(__name__)


def variants_within_limits(
    variants: list[dict[str, Any]], validate: ValidateStage, stats: AugmentStats
) -> list[dict[str, Any]]:
    """Return the variants that hold every invariant and limit; count the rest in `stats`."""
    kept = []
    for variant in variants:
        entry = validate.rejection(variant)
        if entry is None:
            kept.append(variant)
            continue
        stats.dropped_variants += 1
        log.info("variant %s dropped: %s: %s", variant.get("id"), entry.reason, entry.message)
    return kept
