"""What every record stage returns: the rows it kept, the records it rejected, its stats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.record.rejection import QuarantineEntry


def empty_augment_stats() -> dict[str, Any]:
    """Return augmentation stats with every counter at zero (the shape merge_stats keeps)."""
    return {
        "variants": 0,
        "empty_variants": 0,
        "ops": {},
        "flip_guard_skipped": 0,
        "flip_guard_swapped": 0,
        "text_skipped": 0,
        "failed_variants": 0,
    }


@dataclass
class StageResult:
    """The rows a stage kept (or produced), the records it rejected, and its stats."""

    table: pa.Table
    rejected: list[QuarantineEntry] = field(default_factory=list)
    stats: dict[str, Any] | None = None
