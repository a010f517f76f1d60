"""LLaMA-Factory / ms-swift records, and the ShareGPT / LLaVA spelling of the same idea.

    {"messages": [{"role", "content"}], "images": [...], "audios": [...], "system"?, "character"?}
    {"conversations": [{"from", "value"}], "image": "x.jpg" | [...], "audio"?, "system"?}
    {"conversations": [...], "speech": "x.wav"}         LLaVA-style speech data (LLaMA-Omni)
    {"system"?, "conversation": [{"human", "assistant"}]}  ms-swift's ShareGPT spelling

Media are listed beside the dialogue; `<image>` / `<audio>` placeholders mark where they go.
A speech record's `<speech>` placeholder is its audio's. lmms-finetune writes the system
turn as `system_prompt`. ms-swift's `videos` are refused like any video.
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
    unmapped_keys,
)
from pipeline.record.characters import character_from_value
from pipeline.record.schema import AUDIO_PLACEHOLDER

MAPPED = frozenset(
    {
        "messages",
        "conversations",
        "system",
        "system_prompt",
        "images",
        "image",
        "audios",
        "audio",
        "speech",
        "character",
    }
)
MAPPED_SWIFT = frozenset({"conversation", "system", "images", "audios", "character"})
# LLaVA-style speech instruction data marks its clip with this token.
SPEECH_PLACEHOLDER = "<speech>"


def parse_llamafactory(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a `messages` record whose contents are strings.

    A record whose contents are part lists (LLaMA-Factory's `{"type", "value"}` parts, or
    any other spelling) is read by `parse_parts`, so a file whose first record happened to
    be text-only is still read right.
    """
    messages = value.get("messages")
    if isinstance(messages, list) and any(
        isinstance(m, dict) and isinstance(m.get("content"), list) for m in messages
    ):
        from pipeline.readers.parts import parse_parts

        return parse_parts(value)
    turns = _turns(value.get("messages"), "messages", role_key="role", text_key="content")
    return _with_media_and_system(value, turns)


def parse_sharegpt(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a ShareGPT / LLaVA `conversations` record."""
    turns = _turns(value.get("conversations"), "conversations", role_key="from", text_key="value")
    return _with_media_and_system(value, turns)


def parse_swift_conversation(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of an ms-swift `{"system", "conversation": [{human, assistant}]}`."""
    turns = []
    for i, pair in enumerate(require_list(value.get("conversation"), "conversation")):
        pair = require_dict(pair, f"conversation[{i}]")
        turns.append(RawTurn("user", require_str(pair.get("human"), f"conversation[{i}].human")))
        turns.append(
            RawTurn("assistant", require_str(pair.get("assistant"), f"conversation[{i}].assistant"))
        )
    parsed = _with_media_and_system(value, turns)
    parsed.unmapped = unmapped_keys(value, MAPPED_SWIFT)
    return parsed


def _turns(messages: Any, where: str, role_key: str, text_key: str) -> list[RawTurn]:
    turns = []
    for i, message in enumerate(require_list(messages, where)):
        message = require_dict(message, f"{where}[{i}]")
        # Both spellings appear inside either list in the wild (dataset_info "tags" remap them).
        speaker = message.get(role_key, message.get("from" if role_key == "role" else "role"))
        text = message.get(text_key, message.get("value" if text_key == "content" else "content"))
        turns.append(
            RawTurn(
                speaker=require_str(speaker, f"{where}[{i}].{role_key}"),
                content=require_str(text, f"{where}[{i}].{text_key}"),
                name=optional_str(message.get("name"), f"{where}[{i}].name"),
            )
        )
    return turns


def _with_media_and_system(value: dict[str, Any], turns: list[RawTurn]) -> ParsedRecord:
    system = optional_str(value.get("system"), "system") or optional_str(
        value.get("system_prompt"), "system_prompt"
    )
    if system and not (turns and turns[0].speaker.casefold() == "system"):
        turns.insert(0, RawTurn(speaker="system", content=system))
    images = media_refs(value.get("images"), "images") + media_refs(value.get("image"), "image")
    audios = media_refs(value.get("audios"), "audios") + media_refs(value.get("audio"), "audio")
    if value.get("speech") is not None:
        audios += media_refs(value["speech"], "speech")
        for turn in turns:
            turn.content = turn.content.replace(SPEECH_PLACEHOLDER, AUDIO_PLACEHOLDER)
    return ParsedRecord(
        turns=turns,
        images=images,
        audios=audios,
        character=character_from_value(value.get("character")),
        unmapped=unmapped_keys(value, MAPPED),
    )
