"""Records in our own canonical schema (Arrow IPC shards of a version, or canonical Parquet).

Re-ingesting a version keeps character, messages and media bytes; ids, splits, parents and
augmentation history are derived again, so the new dataset is consistent on its own.
"""

from __future__ import annotations

from typing import Any

from pipeline.readers.assemble import (
    ParsedRecord,
    RawTurn,
    media_refs,
    optional_str,
    require_dict,
    require_list,
    require_str,
)
from pipeline.record.characters import character_from_value

CANONICAL_KEYS = frozenset({"id", "source", "messages", "images", "audios"})


def parse_canonical(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a canonical record; its roles are already canonical."""
    turns = []
    for i, message in enumerate(require_list(value.get("messages"), "messages")):
        message = require_dict(message, f"messages[{i}]")
        turns.append(
            RawTurn(
                speaker=require_str(message.get("role"), f"messages[{i}].role"),
                content=require_str(message.get("content"), f"messages[{i}].content"),
                name=optional_str(message.get("name"), f"messages[{i}].name"),
            )
        )
    references = value.get("references")
    return ParsedRecord(
        turns=turns,
        references=[
            require_str(r, f"references[{i}]")
            for i, r in enumerate(require_list(references, "references") if references else [])
        ],
        images=media_refs(value.get("images"), "images"),
        audios=media_refs(value.get("audios"), "audios"),
        character=character_from_value(value.get("character")),
    )
