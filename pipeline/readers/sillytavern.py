"""SillyTavern chat logs as the app saves and exports them (`data/<user>/chats/<char>/*.jsonl`).

    line 1: {"user_name": "User", "character_name": "Seraphina", "create_date",
             "chat_metadata"?: {...}}        (chats SillyTavern imported have none)
    then one message a line:
            {"name", "is_user": bool, "is_system": bool, "send_date", "mes",
             "swipes"?: [...], "swipe_id"?, "swipe_info"?, "extra"?: {...}}

A whole file is one conversation. Its character is `character_name`; give the card with
`characters:` and its description, personality and greeting join the record. A group
chat (`data/<user>/group chats/*.jsonl`) has no header line, only messages, and names no
played character: the source's `character:` says which member is played (every other
member is a named user turn). Choices:
- `is_system: true` marks a message hidden from the prompt (SillyTavern's /hide, and
  comments): the model never saw it, so it is left out, and counted as `is_system`.
- A narrator message (`extra.type: "narrator"`, SillyTavern's /sys) is narration: a
  nameless user turn in *action* markup, never a line the character is trained to say.
- Swipes: `mes` is the reply the user kept; the other swipes are rejected alternatives,
  not offered as replies, and counted as `swipes`.
- Other speakers (a group chat's other characters) keep their names as user turns.
A broken line costs that line (quarantined on its own); the chat is read from the rest.
"""

from __future__ import annotations

from typing import Any

from pipeline.readers.assemble import (
    ParsedRecord,
    RawTurn,
    mark_action,
    require_dict,
    require_str,
    unmapped_keys,
)
from pipeline.record.characters import make_character
from pipeline.record.rejection import RecordRejected

HEADER_MAPPED = frozenset({"user_name", "character_name", "create_date", "chat_metadata"})
MESSAGE_MAPPED = frozenset({"name", "is_user", "is_system", "mes", "swipes", "swipe_info", "extra"})
NARRATOR = "narrator"


def is_chat_header(value: dict[str, Any]) -> bool:
    """Return whether a chat file's first line is its header (a group chat has none)."""
    return "character_name" in value and "mes" not in value


def parse_chat_log(
    header: dict[str, Any] | None, messages: list[tuple[str, dict[str, Any]]]
) -> ParsedRecord:
    """Return the parsed form of one chat: its header line (None for a group chat) and its
    (line, message) pairs."""
    name = None
    if header is not None:
        name = require_str(header.get("character_name"), "character_name").strip()
        if not name:
            raise RecordRejected("wrong_types", "character_name is empty")
    unmapped = set(unmapped_keys(header or {}, HEADER_MAPPED))
    turns = []
    for line, message in messages:
        where = f"line {line}"
        message = require_dict(message, where)
        # The app's bookkeeping (send_date, gen_started, swipe_id, ...) is counted too.
        unmapped.update(f"messages[].{k}" for k in message if k not in MESSAGE_MAPPED)
        if message.get("is_system") is True:
            unmapped.add("is_system")
            continue
        text = require_str(message.get("mes"), f"{where}.mes")
        extra = message.get("extra") if isinstance(message.get("extra"), dict) else {}
        unmapped.update(f"extra.{k}" for k in extra if k != "type")
        swipes = message.get("swipes")
        if isinstance(swipes, list) and len(swipes) > 1:
            unmapped.add("swipes")
        if extra.get("type") == NARRATOR:
            turns.append(RawTurn(speaker="narrator", content=mark_action(text)))
            continue
        speaker = require_str(message.get("name"), f"{where}.name").strip()
        if message.get("is_user") is True:
            turns.append(RawTurn(speaker="user", content=text, name=speaker or None))
        else:
            turns.append(RawTurn(speaker=speaker or name or "", content=text))
    return ParsedRecord(
        turns=turns,
        character=make_character(name) if name else None,
        unmapped=sorted(unmapped),
    )
