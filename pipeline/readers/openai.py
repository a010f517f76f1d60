"""OpenAI chat records whose message contents are lists of typed parts.

    {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "..."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,..." | "images/a.png"}},
        {"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}]}]}

Each media part becomes a placeholder at its place in the text and a media item in order.
"""

from __future__ import annotations

from typing import Any

from pipeline.readers.assemble import (
    MediaRef,
    ParsedRecord,
    RawTurn,
    optional_str,
    require_dict,
    require_list,
    require_str,
    unmapped_keys,
)
from pipeline.record.characters import character_from_value
from pipeline.record.rejection import RecordRejected
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER

# Parts are joined on new lines, as LLaVA-style data writes "<image>\nWhat is this?".
PART_SEPARATOR = "\n"
MAPPED = frozenset({"messages", "character"})


def parse_openai(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of an OpenAI chat record (string or part-list contents)."""
    parsed = ParsedRecord(
        turns=[],
        character=character_from_value(value.get("character")),
        unmapped=unmapped_keys(value, MAPPED),
    )
    if any(value.get(k) for k in ("images", "audios", "image", "audio")):
        # Media listed beside part lists would have no defined place among the parts.
        raise RecordRejected(
            "wrong_types", "content parts and top-level images/audios cannot be mixed"
        )
    for i, message in enumerate(require_list(value.get("messages"), "messages")):
        where = f"messages[{i}]"
        message = require_dict(message, where)
        content = message.get("content")
        if isinstance(content, list):
            text = _parts_to_text(content, where, parsed)
        else:
            text = require_str(content, f"{where}.content")
        parsed.turns.append(
            RawTurn(
                speaker=require_str(message.get("role"), f"{where}.role"),
                content=text,
                name=optional_str(message.get("name"), f"{where}.name"),
            )
        )
    return parsed


def _parts_to_text(parts: list[Any], where: str, parsed: ParsedRecord) -> str:
    pieces = []
    for j, part in enumerate(parts):
        at = f"{where}.content[{j}]"
        part = require_dict(part, at)
        kind = part.get("type")
        if kind == "text":
            pieces.append(require_str(part.get("text"), f"{at}.text"))
        elif kind == "image_url":
            url = part.get("image_url")
            # The API takes {"url": ...}; some exporters write the URL string directly.
            if isinstance(url, dict):
                url = url.get("url")
            parsed.images.append(MediaRef.from_text(require_str(url, f"{at}.image_url.url")))
            pieces.append(IMAGE_PLACEHOLDER)
        elif kind == "input_audio":
            audio = require_dict(part.get("input_audio"), f"{at}.input_audio")
            data = require_str(audio.get("data"), f"{at}.input_audio.data")
            optional_str(audio.get("format"), f"{at}.input_audio.format")
            parsed.audios.append(MediaRef(base64=data))
            pieces.append(AUDIO_PLACEHOLDER)
        elif kind == "audio_url":
            url = part.get("audio_url")
            if isinstance(url, dict):
                url = url.get("url")
            parsed.audios.append(MediaRef.from_text(require_str(url, f"{at}.audio_url.url")))
            pieces.append(AUDIO_PLACEHOLDER)
        else:
            raise RecordRejected("wrong_types", f"{at}.type {kind!r} is not a supported part")
    return PART_SEPARATOR.join(pieces)
