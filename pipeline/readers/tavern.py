"""SillyTavern / TavernAI character cards (chara_card_v1, v2, v3), as JSON or inside a PNG.

    v1: {"name", "description", "personality", "scenario", "first_mes", "mes_example"}
    v2: {"spec": "chara_card_v2", "data": {v1 fields, "system_prompt",
         "post_history_instructions", "alternate_greetings", "character_book", ...}}
    v3: {"spec": "chara_card_v3", "data": {v2 fields, "nickname", ...}}

A PNG card carries the JSON base64-encoded in a tEXt chunk named `ccv3` (v3, preferred)
or `chara`. As a `characters:` file a card is a persona: name, profile (system prompt,
description, personality, scenario, lore entries, post-history instructions), greeting
(first_mes) and the nickname as an alias. As a source `path:` a card is also a corpus:
its greetings and each `<START>` block of `mes_example` become training dialogues.
`{{char}}` / `<BOT>` resolve to the character's name, `{{user}}` / `<USER>` to "User".
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.readers.assemble import ParsedRecord, RawTurn, optional_str, unmapped_keys
from pipeline.record.characters import make_character
from pipeline.record.rejection import RecordRejected

CARD_SPECS = ("chara_card_v2", "chara_card_v3")
V1_FIELDS = frozenset(
    {"name", "description", "personality", "scenario", "first_mes", "mes_example"}
)
MAPPED_DATA_FIELDS = V1_FIELDS | {
    "system_prompt",
    "post_history_instructions",
    "alternate_greetings",
    "character_book",
    "nickname",
}
USER_NAME = "User"

_MACROS = re.compile(r"\{\{\s*(char|user|original)\s*\}\}|<(BOT|USER)>", re.IGNORECASE)
_START = re.compile(r"^\s*<START>\s*$", re.IGNORECASE | re.MULTILINE)
_SPEAKER = re.compile(r"^\s*(\{\{\s*(?:user|char)\s*\}\}|<USER>|<BOT>)\s*:\s?", re.IGNORECASE)


def is_card(value: Any) -> bool:
    """Return whether a parsed JSON value is a character card of any spec version."""
    if not isinstance(value, dict):
        return False
    if value.get("spec") in CARD_SPECS and isinstance(value.get("data"), dict):
        return True
    return "name" in value and "first_mes" in value and len(V1_FIELDS & value.keys()) >= 4


def card_data(value: dict[str, Any]) -> dict[str, Any]:
    """Return the card's fields: `data` of v2/v3 (the spec's source of truth), else the root."""
    if value.get("spec") in CARD_SPECS and isinstance(value.get("data"), dict):
        return value["data"]
    return value


def card_unmapped(value: dict[str, Any]) -> list[str]:
    """Return the card fields no roleforge field carries (root keys beside `data` included)."""
    data = card_data(value)
    unmapped = unmapped_keys(data, MAPPED_DATA_FIELDS | {"spec", "spec_version", "data"})
    if data is not value:
        # v2/v3 mirror the v1 fields at the root for old readers; those are not lost.
        unmapped += unmapped_keys(value, V1_FIELDS | {"spec", "spec_version", "data"})
    return unmapped


def resolve_macros(text: str, name: str, user: str = USER_NAME) -> str:
    """Return `text` with {{char}}/<BOT> as `name`, {{user}}/<USER> as `user`, {{original}} dropped."""

    def sub(m: re.Match[str]) -> str:
        word = (m.group(1) or m.group(2)).lower()
        return {"char": name, "bot": name, "user": user}.get(word, "")

    return _MACROS.sub(sub, text)


def card_character(value: dict[str, Any]) -> dict[str, Any]:
    """Return the canonical character of a card."""
    data = card_data(value)
    name = (optional_str(data.get("name"), "name") or "").strip()
    if not name:
        raise RecordRejected("wrong_types", "the card has no name")

    def text(key: str) -> str:
        return resolve_macros(optional_str(data.get(key), key) or "", name).strip()

    sections = [text("system_prompt"), text("description")]
    if text("personality"):
        sections.append(f"Personality: {text('personality')}")
    if text("scenario"):
        sections.append(f"Scenario: {text('scenario')}")
    lore = _lore(data.get("character_book"), name)
    if lore:
        sections.append("Lore:\n" + "\n".join(lore))
    sections.append(text("post_history_instructions"))
    nickname = optional_str(data.get("nickname"), "nickname")
    return make_character(
        name,
        profile="\n\n".join(s for s in sections if s) or None,
        greeting=text("first_mes") or None,
        aliases=[nickname] if nickname else [],
    )


def _lore(book: Any, name: str) -> list[str]:
    if not isinstance(book, dict) or not isinstance(book.get("entries"), list):
        return []
    lines = []
    for entry in book["entries"]:
        if not isinstance(entry, dict) or entry.get("enabled") is False:
            continue
        content = entry.get("content")
        if not isinstance(content, str) or not content.strip():
            continue
        keys = [k for k in entry.get("keys") or [] if isinstance(k, str)]
        label = f"{', '.join(keys)}: " if keys else ""
        lines.append(f"- {label}{resolve_macros(content.strip(), name)}")
    return lines


def parse_tavern(value: dict[str, Any]) -> list[ParsedRecord]:
    """Return the training dialogues of a card: each greeting, then each example block."""
    character = card_character(value)
    name = character["name"]
    data = card_data(value)
    unmapped = card_unmapped(value)
    greetings = [optional_str(data.get("first_mes"), "first_mes") or ""]
    alternates = data.get("alternate_greetings") or []
    if not isinstance(alternates, list) or not all(isinstance(g, str) for g in alternates):
        raise RecordRejected("wrong_types", "alternate_greetings must be a list of strings")
    records = [
        ParsedRecord(
            turns=[RawTurn(speaker=name, content=resolve_macros(g.strip(), name))],
            character=character,
            unmapped=unmapped,
        )
        for g in [*greetings, *alternates]
        if g.strip()
    ]
    examples = optional_str(data.get("mes_example"), "mes_example") or ""
    for block in _START.split(examples):
        turns = _example_turns(block, name)
        if turns:
            records.append(ParsedRecord(turns=turns, character=character, unmapped=unmapped))
    if not records:
        raise RecordRejected("empty_messages", "the card has no greeting and no example dialogue")
    return records


def _example_turns(block: str, name: str) -> list[RawTurn]:
    """Return the turns of one `<START>` block: `{{user}}:` / `{{char}}:` lines start turns."""
    turns: list[RawTurn] = []
    for line in block.splitlines():
        m = _SPEAKER.match(line)
        if m:
            token = m.group(1).lower()
            speaker = "user" if "user" in token else name
            turns.append(RawTurn(speaker=speaker, content=line[m.end() :]))
        elif turns:
            turns[-1].content += "\n" + line
        elif line.strip():
            # Text before the first speaker sets the scene: narration, not anyone's line.
            turns.append(RawTurn(speaker="", content=line))
    for turn in turns:
        turn.content = resolve_macros(turn.content.strip(), name)
    return [t for t in turns if t.content]
