"""The stage contract: one call shape for every record stage (validate, split, augment, quality).

In the spirit of datatrove's `PipelineStep`: a stage has a `name` and one
`process(batch, ctx) -> StageOutput`. Arrow in, Arrow out. What one stage learns that a later
stage of the same batch needs (decoded pixels, per-record quality facts) travels in the typed
`BatchContext`, keyed by record id, never in a side channel. The record pass is a loop over the
recipe's stages; it counts each stage's output in the order the stages run, and tests call the
same `process` the job calls. No Ray inside a stage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from pipeline.record.rejection import QuarantineEntry


@dataclass
class BatchContext:
    """What the stages of one batch share beside the table.

    `decoded` holds media a stage already decoded, keyed (record id, column, index), e.g.
    ("3f2a...", "images", 0) -> an HxWxC uint8 array, so that the decode that proves an image
    is the one its augmentation (or perceptual hash) uses. `facts` holds per-record facts a
    stage computed for a later one, keyed (record id, stage name).
    """

    decoded: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    facts: dict[tuple[str, str], Any] = field(default_factory=dict)
    # The Python form of rows a stage already converted, by record id: a later stage of the
    # same batch reuses it instead of converting the media bytes out of Arrow again.
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What a stage read of a media item's header, by the id of its bytes object: the bytes
    # (held, so the id is not reused within the batch, and compared, so an entry never
    # answers for other bytes) and (height, width) of an image as viewed (EXIF orientation
    # applied) or (frames, sample rate) of a clip. The token ledger counts media tokens
    # from these instead of parsing each header again (`trainers.media.MediaHeaders`).
    media_headers: dict[int, tuple[bytes, tuple[int, int]]] = field(default_factory=dict)
    # What the quality checks read of each record (a quality.conversation.Conversation), by
    # record id: converted by the first check of the batch, read by the others.
    conversations: dict[str, Any] = field(default_factory=dict)

    def note_media(self, data: bytes, header: tuple[int, int]) -> None:
        """Keep what was read of the header of the media item `data` (`media_headers`)."""
        self.media_headers[id(data)] = (data, header)

    def forget(self, record_ids: set[str]) -> None:
        """Drop what is held for records that left the batch (rejected ones)."""
        self.decoded = {k: v for k, v in self.decoded.items() if k[0] not in record_ids}
        self.facts = {k: v for k, v in self.facts.items() if k[0] not in record_ids}
        self.records = {k: v for k, v in self.records.items() if k not in record_ids}
        self.conversations = {k: v for k, v in self.conversations.items() if k not in record_ids}

    def rows(self, table: pa.Table) -> list[dict[str, Any]]:
        """Return the rows of `table` as Python dicts, converting only those not yet held
        (keyed by id; a stage that changes a row's columns replaces its entry)."""
        ids = table["id"].to_pylist()
        missing = [i for i, rid in enumerate(ids) if rid not in self.records]
        if missing:
            whole = len(missing) == len(ids)
            fresh = (table if whole else table.take(pa.array(missing, pa.int64()))).to_pylist()
            for row in fresh:
                self.records[row["id"]] = row
        return [self.records[rid] for rid in ids]


@dataclass
class StageOutput:
    """The rows a stage kept (or produced), the records it rejected, and its counts.

    `stats` counts by name what the stage did (a reason, a flag, "variants"...); the loop adds
    them under the stage's name, in run order. `detail` carries a stage's richer statistics
    (e.g. the augment stage's AugmentStats), merged by the loop with `merge` when present.
    """

    table: pa.Table
    rejects: list[QuarantineEntry] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    detail: Any | None = None


@runtime_checkable
class Stage(Protocol):
    """A record stage: a name and one `process` over an Arrow batch."""

    name: str

    def process(self, batch: pa.Table, ctx: BatchContext) -> StageOutput: ...
