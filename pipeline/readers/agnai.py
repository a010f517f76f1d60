"""Agnaistic (agnaistic/agnai) chat exports, as its "Export Chat" writes them
(web/pages/Chat/ChatExport.tsx):

    {"name": "Exported", "greeting", "sampleChat", "scenario", "treeLeafId",
     "messages": [{"_id", "createdAt", "msg", "name", "handle", "userId"?,
                   "characterId"?: "imported" | <other character id>, "ooc"?, "extras"?,
                   "json"?, "values"?, "parent"?, "state"?}]}

`characterId: "imported"` marks the chat's own character: its turns are the assistant's and
its `name` the character's. A message with a `userId` is the user's (named by its handle);
any other character is a named user turn. Out-of-character messages (`ooc: true`) were
never part of the story: they are left out and counted as `ooc`. The greeting is the
character's greeting and the scenario its profile; `sampleChat` and the per-message
bookkeeping are counted as unmapped.
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

MAPPED = frozenset({"name", "greeting", "scenario", "messages"})
MESSAGE_MAPPED = frozenset({"msg", "name", "handle", "userId", "characterId", "ooc"})
OWN_CHARACTER = "imported"


def parse_agnai(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of one exported Agnaistic chat."""
    unmapped = set(unmapped_keys(value, MAPPED))
    turns = []
    played: str | None = None
    for i, message in enumerate(require_list(value.get("messages"), "messages")):
        where = f"messages[{i}]"
        message = require_dict(message, where)
        unmapped.update(f"messages[].{k}" for k in message if k not in MESSAGE_MAPPED)
        if message.get("ooc") is True:
            unmapped.add("ooc")
            continue
        text = require_str(message.get("msg"), f"{where}.msg")
        name = optional_str(message.get("name"), f"{where}.name") or optional_str(
            message.get("handle"), f"{where}.handle"
        )
        if message.get("userId"):
            turns.append(RawTurn(speaker="user", content=text, name=name))
        elif message.get("characterId") == OWN_CHARACTER:
            played = played or (name or "").strip() or None
            turns.append(RawTurn(speaker="assistant", content=text))
        else:
            turns.append(RawTurn(speaker=name or "", content=text))
    character = None
    if played:
        character = make_character(
            played,
            profile=optional_str(value.get("scenario"), "scenario") or None,
            greeting=optional_str(value.get("greeting"), "greeting") or None,
        )
    return ParsedRecord(turns=turns, character=character, unmapped=sorted(unmapped))
