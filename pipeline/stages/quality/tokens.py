"""The token ledger: each record's token count under the training model's chat template.

The count (media expanded) and the hash of the processor it holds for land in
`quality.tokens` / `quality.tokens_hash`; the trainer can take a record's length from there
when the hash matches its processor instead of tokenizing again. With `max_tokens`, a
longer record is flagged, quarantined `too_many_tokens`, or truncated: whole turns are
dropped from the end (with their media) until it fits, ending on a character turn, never
cutting inside a turn; a record whose first character turn alone is too long leaves.

The counter comes from the caller (the job builds `trainers.token_ledger.counter_for`):
stages do not import the trainers, and a processor loads once per worker, not per batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

import pyarrow as pa

from pipeline.record.rejection import quarantine_entry
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER, count_placeholders
from pipeline.stages.base import BatchContext, StageOutput
from pipeline.stages.quality.column import add_flags, with_fields


class TokenCounter(Protocol):
    """Counts a canonical record's tokens under one processor."""

    processor_hash: str

    def count(self, record: dict[str, Any]) -> int: ...

    def count_many(
        self, records: list[dict[str, Any]], headers: Mapping[int, Any] | None = None
    ) -> list[int]:
        """Return `count` of each record (one call per batch: a tokenizer batches);
        `headers`: what earlier stages read of media headers (`BatchContext.media_headers`)."""
        ...


def truncated(record: dict[str, Any], keep: int) -> dict[str, Any]:
    """Return `record` with only its first `keep` messages and the media they reference."""
    messages = record["messages"][:keep]
    return {
        **record,
        "messages": messages,
        "images": (record.get("images") or [])[: count_placeholders(messages, IMAGE_PLACEHOLDER)],
        "audios": (record.get("audios") or [])[: count_placeholders(messages, AUDIO_PLACEHOLDER)],
    }


class TokenLedgerStage:
    """Counts every record's tokens; applies `max_tokens` as the policy says."""

    name = "quality.tokens"

    def __init__(self, counter: TokenCounter, max_tokens: int | None = None, policy: str = "flag"):
        self.counter = counter
        self.max_tokens = max_tokens
        self.policy = policy

    def _fit(self, record: dict[str, Any]) -> tuple[dict[str, Any], int] | None:
        """Return the longest prefix of `record` ending on a character turn that fits."""
        ends = [i + 1 for i, m in enumerate(record["messages"]) if m["role"] == "assistant"]
        for keep in reversed(ends[:-1]):
            shorter = truncated(record, keep)
            tokens = self.counter.count(shorter)
            if tokens <= (self.max_tokens or 0):
                return shorter, tokens
        return None

    def process(self, batch: pa.Table, ctx: BatchContext) -> StageOutput:
        limit = self.max_tokens
        # The rows earlier stages converted (validation's originals, augment's variants),
        # read only: an original's quality column there predates the checks' findings.
        records = ctx.rows(batch)
        counts = self.counter.count_many(records, ctx.media_headers)
        stats: Counter[str] = Counter(records=len(records), tokens=sum(counts))
        flags: dict[int, list[tuple[str, str]]] = {}
        rejects, drop, cut = [], set(), {}
        for row, (record, tokens) in enumerate(zip(records, counts, strict=True)):
            ctx.facts[(record["id"], self.name)] = tokens
            if limit is None or tokens <= limit:
                continue
            stats["too_many_tokens"] += 1
            note = f"{tokens} tokens, over max_tokens {limit}"
            fitted = self._fit(record) if self.policy == "truncate" else None
            if self.policy == "flag":
                flags[row] = [("too_many_tokens", note)]
            elif fitted is not None:
                cut[row], counts[row] = fitted
                flags[row] = [("truncated", f"{note}; cut to {fitted[1]} at a turn boundary")]
                stats["truncated"] += 1
            else:
                rejects.append(quarantine_entry(self.name, record, "too_many_tokens", note))
                drop.add(row)
        table = batch
        if cut:
            rows = batch.to_pylist()  # with the checks' quality findings
            for row, shorter in cut.items():
                rows[row].update({k: shorter[k] for k in ("messages", "images", "audios")})
            table = pa.Table.from_pylist(rows, schema=batch.schema)
        counted = {
            "tokens": pa.array(counts, pa.int64()),
            "tokens_hash": pa.array([self.counter.processor_hash] * len(counts), pa.string()),
        }
        table = add_flags(with_fields(table, counted), flags)
        if drop:
            ctx.forget({records[row]["id"] for row in drop})
            table = table.filter(pa.array([row not in drop for row in range(table.num_rows)]))
        return StageOutput(table, rejects=rejects, stats=stats)
