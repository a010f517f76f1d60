"""Which parts of a turn a text op may edit: never placeholders, the character's names or catchphrases."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER

PLACEHOLDERS = (IMAGE_PLACEHOLDER, AUDIO_PLACEHOLDER)


def protected_terms(character: dict[str, Any] | None) -> list[str]:
    """Return the strings no text op may alter: placeholders, every name the character answers
    to (its name, each alias, and their parts), and its catchphrases."""
    terms = list(PLACEHOLDERS)
    if character:
        names = [character.get("name") or "", *(character.get("aliases") or [])]
        for name in (n.strip() for n in names if n):
            if not name:
                continue
            terms.append(name)
            # "Hatsune Miku" is often just "Miku" in the dialogue; of "Bramble, Warden of the
            # Greenwood" the capitalised words, not "of" or "the".
            terms.extend(
                part for part in re.split(r"[^\w'-]+", name) if len(part) >= 3 and part[0].isupper()
            )
        terms.extend(c.strip() for c in character.get("catchphrases") or [] if c and c.strip())
    return terms


def protection_pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    """Return one regex matching any protected term (longest first, case-insensitive, whole words)."""
    unique = sorted({t for t in terms if t}, key=len, reverse=True)
    if not unique:
        return None
    alternatives = []
    for term in unique:
        # A word boundary only where the term starts/ends with a word character, so "<image>"
        # and CJK names still match inside running text.
        left = r"(?<!\w)" if term[0].isalnum() else ""
        right = r"(?!\w)" if term[-1].isalnum() else ""
        alternatives.append(left + re.escape(term) + right)
    return re.compile("|".join(alternatives), re.IGNORECASE)


@dataclass(frozen=True)
class Segment:
    """A piece of a turn; `editable` pieces hold no protected term, newline or outer whitespace."""

    text: str
    editable: bool


_LINE_PARTS = re.compile(r"(\s*\n\s*)")
_EDGES = re.compile(r"^(\s*)(.*?)(\s*)$", re.DOTALL)


def segment_text(text: str, pattern: re.Pattern[str] | None) -> list[Segment]:
    """Return `text` cut into protected and editable segments; joining their texts gives `text` back.

    Editable segments are single lines without outer whitespace: the libraries we call
    collapse whitespace, and line breaks in a role-play turn carry meaning.
    """
    pieces: list[tuple[str, bool]] = []
    pos = 0
    if pattern is not None:
        for m in pattern.finditer(text):
            if m.start() > pos:
                pieces.append((text[pos : m.start()], True))
            pieces.append((m.group(0), False))
            pos = m.end()
    if pos < len(text):
        pieces.append((text[pos:], True))

    segments: list[Segment] = []
    for piece, free in pieces:
        if not free:
            segments.append(Segment(piece, False))
            continue
        for part in _LINE_PARTS.split(piece):
            if not part:
                continue
            if "\n" in part or not part.strip():
                segments.append(Segment(part, False))
                continue
            lead, core, trail = _EDGES.match(part).groups()  # type: ignore[union-attr]
            if lead:
                segments.append(Segment(lead, False))
            segments.append(Segment(core, True))
            if trail:
                segments.append(Segment(trail, False))
    return segments


def is_latin_script(text: str) -> bool:
    """Return True when every letter of `text` is Latin (ASCII or accented); digits and symbols don't count."""
    if text.isascii():  # most turns: one C-level scan instead of a Python loop per character
        return True
    for ch in text:
        if ch.isalpha() and ord(ch) > 0x7F:
            if not unicodedata.name(ch, "").startswith("LATIN"):
                return False
    return True


def has_letters(text: str) -> bool:
    """Return True when `text` holds at least one letter."""
    return any(ch.isalpha() for ch in text)
