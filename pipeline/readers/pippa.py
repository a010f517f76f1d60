"""PIPPA character conversations: each record plays one bot persona.

{"bot_name", "bot_definitions", "bot_greeting", "bot_description"?,
 "conversation": [{"message", "is_human"}]}
"""

from __future__ import annotations

from typing import Any

from pipeline.readers.assemble import (
    ParsedRecord,
    RawTurn,
    optional_str,
    require_dict,
    require_list,
    require_str,
    unmapped_keys,
)
from pipeline.record.characters import make_character
from pipeline.record.rejection import RecordRejected

MAPPED = frozenset(
    {"bot_name", "bot_definitions", "bot_greeting", "bot_description", "conversation"}
)


def parse_pippa(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a PIPPA record; bot turns are the character's."""
    name = require_str(value.get("bot_name"), "bot_name").strip()
    if not name:
        raise RecordRejected("wrong_types", "bot_name is empty")
    definitions = optional_str(value.get("bot_definitions"), "bot_definitions")
    description = optional_str(value.get("bot_description"), "bot_description")
    character = make_character(
        name,
        profile=definitions or description or None,
        greeting=optional_str(value.get("bot_greeting"), "bot_greeting") or None,
    )
    turns = []
    for i, message in enumerate(require_list(value.get("conversation"), "conversation")):
        message = require_dict(message, f"conversation[{i}]")
        is_human = message.get("is_human")
        if not isinstance(is_human, bool):
            raise RecordRejected("wrong_types", f"conversation[{i}].is_human must be true or false")
        text = require_str(message.get("message"), f"conversation[{i}].message")
        turns.append(RawTurn(speaker="user" if is_human else name, content=text))
    return ParsedRecord(turns=turns, character=character, unmapped=unmapped_keys(value, MAPPED))
