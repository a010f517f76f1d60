"""RisuAI (kwaroran/RisuAI) chat exports, as its "Export as JSON" writes them
(src/ts/characters.ts: exportChat, exportAllChats; types in src/ts/storage/database.svelte.ts):

    {"type": "risuChat", "ver": 2, "data": <Chat>, "folders": [...]}        one chat
    {"type": "risuAllChats", "ver": 2, "data": [<Chat>, ...], "folders": [...]}
    (ver 1 wrote the same `data` without folders)
    Chat: {"message": [<Message>], "note", "name", "localLore", "fmIndex"?, "id"?, ...}
    Message: {"role": "user" | "char", "data", "saying"?: <character id>, "chatId"?,
              "time"?, "name"?: <user name in a shared session>,
              "disabled"?: true | "allBefore", "isComment"?, "generationInfo"?, ...}

Each chat is one record. The export names no character (only the file name carries it, and
the greeting stays in the card: `fmIndex` points into it), so the source's `character:`
says who is played and `characters:` gives the card; `char` messages are the character's.
What the app sends the model decides what is read (src/ts/process/index.svelte.ts): a
`disabled: true` message is left out, `disabled: "allBefore"` cuts it and everything
before it; both are counted as `disabled`. An error the app wrote into the chat
(a ```risuerror block) is not the character's line: it is cut out, counted as `risuerror`.
A group chat's `char` messages carry several `saying` ids that the export does not resolve
to names: which one is played cannot be told, so the chat is refused (`unknown_role`). Inlaid
images (`{{inlay::id}}`) live in the app's browser storage, not in the export: such a chat
is refused as `missing_media` rather than read without the images its text points at.
"""

from __future__ import annotations

import re
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
from pipeline.record.rejection import RecordRejected

EXPORT_TYPES = ("risuChat", "risuAllChats")
MAPPED = frozenset({"type", "ver", "data"})
CHAT_MAPPED = frozenset({"message"})
MESSAGE_MAPPED = frozenset({"role", "data", "saying", "name", "disabled"})
ROLES = ("user", "char")
CUT_BEFORE = "allBefore"
_ERROR_BLOCK = re.compile(r"\n?```risuerror\n.*?\n```", re.DOTALL)
_INLAY = re.compile(r"\{\{(?:inlay|inlayed|inlayeddata)::([^}]*)\}\}")


def is_chat(value: Any) -> bool:
    """Return whether a value is a RisuAI chat: a `message` list of {role, data}."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("message"), list)
        and all(isinstance(m, dict) and "role" in m and "data" in m for m in value["message"])
    )


def parse_risuai(value: dict[str, Any]) -> ParsedRecord | list[ParsedRecord]:
    """Return the parsed chat of a risuChat export, or one per chat of a risuAllChats one."""
    kind = value.get("type")
    if kind not in EXPORT_TYPES:
        raise RecordRejected("wrong_types", f"type must be one of {EXPORT_TYPES}, not {kind!r}")
    unmapped = unmapped_keys(value, MAPPED)
    if kind == "risuChat":
        return _parse_chat(require_dict(value.get("data"), "data"), "data", unmapped)
    chats = require_list(value.get("data"), "data")
    return [
        _parse_chat(require_dict(chat, f"data[{i}]"), f"data[{i}]", unmapped)
        for i, chat in enumerate(chats)
    ]


def _parse_chat(chat: dict[str, Any], where: str, unmapped: list[str]) -> ParsedRecord:
    found = set(unmapped) | {f"chat.{k}" for k in unmapped_keys(chat, CHAT_MAPPED)}
    turns: list[RawTurn] = []
    speakers: set[str] = set()
    for i, message in enumerate(require_list(chat.get("message"), f"{where}.message")):
        at = f"{where}.message[{i}]"
        message = require_dict(message, at)
        found.update(f"message[].{k}" for k in message if k not in MESSAGE_MAPPED)
        disabled = message.get("disabled")
        if disabled == CUT_BEFORE:
            # The app stops reading back at this message: it and all before it are unsent.
            turns.clear()
            speakers.clear()
        if disabled in (True, CUT_BEFORE):
            found.add("disabled")
            continue
        role = require_str(message.get("role"), f"{at}.role")
        if role not in ROLES:
            raise RecordRejected("unknown_role", f"{at}.role {role!r} is not user or char")
        text = require_str(message.get("data"), f"{at}.data")
        inlay = _INLAY.search(text)
        if inlay:
            raise RecordRejected(
                "missing_media",
                f"{at} shows inlaid media {inlay.group(0)!r}, which RisuAI keeps in the "
                "app's storage, not in the chat export",
            )
        if _ERROR_BLOCK.search(text):
            found.add("risuerror")
            text = _ERROR_BLOCK.sub("", text)
            if not text.strip():
                continue
        if role == "char":
            saying = optional_str(message.get("saying"), f"{at}.saying")
            if saying:
                speakers.add(saying)
            turns.append(RawTurn(speaker="assistant", content=text))
        else:
            name = optional_str(message.get("name"), f"{at}.name")
            turns.append(RawTurn(speaker="user", content=text, name=name or None))
    if len(speakers) > 1:
        raise RecordRejected(
            "unknown_role",
            f"{where} is a group chat: its char messages come from {len(speakers)} characters "
            "that the export names only by id, so which one is played cannot be told",
        )
    return ParsedRecord(turns=turns, unmapped=sorted(found))
