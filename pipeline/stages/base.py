"""What every record stage returns: the rows it kept, the records it rejected, its stats."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from augmenters.stats import AugmentStats
from pipeline.record.rejection import QuarantineEntry


@dataclass
class StageResult:
    """The rows a stage kept (or produced), the records it rejected, and its stats."""

    table: pa.Table
    rejected: list[QuarantineEntry] = field(default_factory=list)
    stats: AugmentStats | None = None
