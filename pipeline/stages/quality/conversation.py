"""The text side of a batch as the quality checks read it: turns without media placeholders."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa

from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER
from pipeline.stages.base import BatchContext

_PLACEHOLDERS = re.compile(re.escape(IMAGE_PLACEHOLDER) + "|" + re.escape(AUDIO_PLACEHOLDER))
_WORD = re.compile(r"\w+", re.UNICODE)
_NOT_WORD = re.compile(r"\W+", re.UNICODE)
# Scripts written without spaces: each character counts as a word.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class Turn(NamedTuple):
    # A named tuple, not a frozen dataclass: every check's batch builds one per message,
    # and a frozen dataclass's __init__ took 0.6 us against 0.26.
    index: int  # position in the record's messages
    role: str
    name: str | None
    text: str  # content without <image>/<audio> placeholders


@dataclass(frozen=True)
class Conversation:
    """One record's id, character and turns: what every text check needs, no media."""

    id: str
    character: dict[str, Any] | None
    turns: list[Turn]

    @functools.cached_property
    def character_turns(self) -> list[Turn]:
        """The assistant turns (read by four checks of each batch: worked out once)."""
        return [t for t in self.turns if t.role == "assistant"]

    @property
    def character_name(self) -> str | None:
        return (self.character or {}).get("name")


def conversations(batch: pa.Table, ctx: BatchContext | None = None) -> list[Conversation]:
    """Return one Conversation per row of `batch`, reading only id, character and messages.

    With the batch's `ctx`, each record's Conversation is kept in `ctx.conversations` and
    the next check of the batch takes it from there (the checks before augment change no
    record's turns; a record that leaves the batch leaves it, `BatchContext.forget`), and a
    row validation already converted (`ctx.records`) is read from there, not from Arrow.
    """
    if ctx is None:
        return _converted(batch)
    ids = batch["id"].to_pylist()
    missing = [row for row, rid in enumerate(ids) if rid not in ctx.conversations]
    held = [ctx.records[ids[row]] for row in missing if ids[row] in ctx.records]
    if len(held) < len(missing):  # convert the rest out of Arrow
        rows = [row for row in missing if ids[row] not in ctx.records]
        taken = batch if len(rows) == len(ids) else batch.take(pa.array(rows, pa.int64()))
        found = _converted(taken)
    else:
        found = []
    for conv in found + [_conversation(r["id"], r["character"], r["messages"]) for r in held]:
        ctx.conversations[conv.id] = conv
    return [ctx.conversations[rid] for rid in ids]


def _converted(batch: pa.Table) -> list[Conversation]:
    columns = (batch[name].to_pylist() for name in ("id", "character", "messages"))
    return [_conversation(*row) for row in zip(*columns, strict=True)]


def _conversation(record_id: str, character: Any, messages: Any) -> Conversation:
    turns = [
        Turn(i, m["role"], m.get("name"), _text(m.get("content") or ""))
        for i, m in enumerate(messages or [])
    ]
    return Conversation(record_id, character, turns)


def _text(content: str) -> str:
    """Return `content` without its media placeholders (most turns have none)."""
    if IMAGE_PLACEHOLDER in content or AUDIO_PLACEHOLDER in content:
        return _PLACEHOLDERS.sub("", content)
    return content


def words(text: str) -> list[str]:
    """Return the lower-cased words of `text`; Chinese and Japanese characters one by one."""
    low = text.lower()
    tokens = _WORD.findall(low)
    if not _UNSPACED.search(low):  # one search per text, not one per word
        return tokens
    out: list[str] = []
    for token in tokens:
        if _UNSPACED.search(token):
            out.extend(token)
        else:
            out.append(token)
    return out


def normalized(text: str) -> str:
    """Return `text` NFKC-folded, lower-cased, with runs of space and punctuation as one space."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return _NOT_WORD.sub(" ", folded).strip()


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """Return the n-grams of `tokens` in order (none when there are fewer than n)."""
    # The shifted copies end where the last whole n-gram does (`strict=False` on purpose).
    return list(zip(*(tokens[i:] for i in range(n)), strict=False))
