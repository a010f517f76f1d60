"""A record as the viewer shows it: turns by speaker, and a variant's turns beside its original's."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from pipeline.cli.preview import highlight_changes
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER


def turn_kind(message: dict[str, Any]) -> str:
    """Return how a turn is drawn: system, character (assistant), narration or user.

    Readers write narration as a nameless user turn in action markup (`*...*`), so it is
    context, not a line anyone speaks.
    """
    role = message.get("role")
    if role == "assistant":
        return "character"
    if role == "system":
        return "system"
    content = (message.get("content") or "").strip()
    if not message.get("name") and len(content) > 1 and content[0] == "*" and content[-1] == "*":
        return "narration"
    return "user"


@dataclass(frozen=True)
class TurnPair:
    """One row of a variant beside its original: either side may be missing."""

    before: dict[str, Any] | None
    after: dict[str, Any] | None
    diff: Markup  # the variant's text, words added and removed marked (escaped)

    @property
    def change(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "same" if self.before["content"] == self.after["content"] else "changed"


def aligned_turns(original: list[dict[str, Any]], variant: list[dict[str, Any]]) -> list[TurnPair]:
    """Return the variant's turns aligned with the original's (dialogue ops drop or add
    turns; text ops edit them in place), each with its word-level diff."""

    def key(m: dict[str, Any]) -> str:
        return f"{m.get('role')}\x00{m.get('content')}"

    pairs: list[TurnPair] = []
    matcher = difflib.SequenceMatcher(
        None, [key(m) for m in original], [key(m) for m in variant], autojunk=False
    )
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        before, after = original[i1:i2], variant[j1:j2]
        for k in range(max(len(before), len(after))):
            a = before[k] if k < len(before) else None
            b = after[k] if k < len(after) else None
            if op == "equal" or (a is not None and b is not None):
                diff = Markup(highlight_changes(a["content"] or "", b["content"] or ""))
            elif b is not None:
                diff = Markup("<ins>") + escape(b["content"] or "") + Markup("</ins>")
            else:
                diff = Markup("<del>") + escape(a["content"] or "") + Markup("</del>")
            pairs.append(TurnPair(a, b, diff))
    return pairs


@dataclass(frozen=True)
class PlacedMedia:
    """Which media items each turn shows: the n-th `<image>` placeholder is image n."""

    images: list[list[int]]
    audios: list[list[int]]
    unplaced_images: list[int]
    unplaced_audios: list[int]


def turn_media(messages: list[dict[str, Any]], images: int, audios: int) -> PlacedMedia:
    """Return the media items under each turn, in placeholder order; items beyond the
    placeholders (never in a valid version) are listed apart rather than hidden."""
    placed: dict[str, list[list[int]]] = {"images": [], "audios": []}
    used = {"images": 0, "audios": 0}
    totals = {"images": images, "audios": audios}
    for message in messages:
        content = message.get("content") or ""
        for column, token in (("images", IMAGE_PLACEHOLDER), ("audios", AUDIO_PLACEHOLDER)):
            start = used[column]
            stop = min(start + content.count(token), totals[column])
            placed[column].append(list(range(start, stop)))
            used[column] = stop
    return PlacedMedia(
        placed["images"],
        placed["audios"],
        list(range(used["images"], images)),
        list(range(used["audios"], audios)),
    )
