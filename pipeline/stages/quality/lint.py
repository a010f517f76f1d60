"""The shape every role-play check shares: a per-record finding, then the policy decides.

One check, one reason, one stat (Data-Juicer's filters, datatrove's `base_filter`): a
check's `find` looks at one Conversation and returns what it saw, or None; `process` keeps
that finding in the batch context, then quarantines the record with the check's reason,
or adds the reason to `quality.flags`, as the policy says.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record.rejection import quarantine_entry
from pipeline.stages.base import BatchContext, StageOutput
from pipeline.stages.quality.column import add_flags
from pipeline.stages.quality.conversation import Conversation, conversations

EXCERPT = 80


class LintStage:
    """A check over one conversation's text. Subclasses set `reason` and define `find`."""

    reason: str = ""

    def __init__(self, policy: str):
        if policy == "off":
            raise ValueError(f"{self.reason} is off: leave the stage out instead")
        self.policy = policy

    @property
    def name(self) -> str:
        return f"quality.{self.reason}"

    def find(self, conversation: Conversation) -> str | None:
        """Return what the check saw in `conversation` (a short note), or None."""
        raise NotImplementedError

    def prepare(self, batch: pa.Table, found: list[Conversation]) -> None:
        """Hook for checks that read the whole batch at once (the language identifier)."""

    def process(self, batch: pa.Table, ctx: BatchContext) -> StageOutput:
        convs = conversations(batch, ctx)
        self.prepare(batch, convs)
        stats: Counter[str] = Counter()
        findings: dict[int, str] = {}
        for row, conv in enumerate(convs):
            note = self.find(conv)
            if note is not None:
                findings[row] = note
                ctx.facts[(conv.id, self.name)] = note
        stats[self.reason] = len(findings)
        if self.policy == "flag" or not findings:
            table = add_flags(batch, {r: [(self.reason, n)] for r, n in findings.items()})
            return StageOutput(table, stats=stats)
        rejects = [
            quarantine_entry(self.name, record_for_quarantine(batch, row), self.reason, note)
            for row, note in findings.items()
        ]
        keep = pa.array([row not in findings for row in range(batch.num_rows)])
        ctx.forget({convs[row].id for row in findings})
        return StageOutput(pc.filter(batch, keep), rejects=rejects, stats=stats)


def record_for_quarantine(batch: pa.Table, row: int) -> dict[str, Any]:
    """Return what a quarantine entry needs of one row (no media)."""
    columns = [c for c in ("id", "source", "source_ref", "messages") if c in batch.column_names]
    return batch.select(columns).slice(row, 1).to_pylist()[0]


def excerpt(text: str, start: int, end: int) -> str:
    """Return the matched span of `text` with a little context, quoted, for a note."""
    left, right = max(0, start - 20), min(len(text), end + 20)
    snippet = " ".join(text[left:right].split())
    return repr(snippet[:EXCERPT])
