"""Chat records whose message contents are lists of typed parts, in every spelling trainers use.

    OpenAI:        {"type": "text", "text"}, {"type": "image_url", "image_url": {"url"}},
                   {"type": "input_audio", "input_audio": {"data": <base64>, "format"}},
                   {"type": "audio_url", "audio_url": {"url"}}
    LLaMA-Factory: {"type": "text" | "image_url" | "image" | "audio" | ..., "value": ...}
    HF / TRL:      {"type": "image"} / {"type": "audio"} with no payload, the media in the
                   record's `images` / `audios` column, in order; text as OpenAI's.

Each media part becomes a placeholder at its place in the text and a media item in order.
A part with a payload (a path, URL or data) and a bare part of the same kind cannot be mixed
in one record: the column's order would no longer say which item goes where. Video parts
are refused (roleforge carries images and audio only).
"""

from __future__ import annotations

from typing import Any

from pipeline.readers.assemble import (
    MediaRef,
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
from pipeline.record.rejection import RecordRejected
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER

# Parts are joined on new lines, as LLaVA-style data writes "<image>\nWhat is this?".
PART_SEPARATOR = "\n"
MAPPED = frozenset({"messages", "character", "system", "images", "audios"})
MESSAGE_MAPPED = frozenset({"role", "name"})
IMAGE_KINDS = ("image_url", "image")
AUDIO_KINDS = ("input_audio", "audio_url", "audio")
VIDEO_KINDS = ("video", "video_url")


def parse_parts(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a chat record whose contents are strings or part lists."""
    parsed = ParsedRecord(
        turns=[],
        character=character_from_value(value.get("character")),
        unmapped=unmapped_keys(value, MAPPED),
    )
    bare = {"image": 0, "audio": 0}
    for i, message in enumerate(require_list(value.get("messages"), "messages")):
        where = f"messages[{i}]"
        message = require_dict(message, where)
        content = message.get("content")
        if isinstance(content, list):
            text = _parts_to_text(content, where, parsed, bare)
        else:
            text = require_str(content, f"{where}.content")
        # Per-turn fields (LLaMA-Factory's loss_weight, ...) are counted, not carried.
        parsed.unmapped.extend(
            f"messages[].{k}" for k in message if k not in MESSAGE_MAPPED and k != "content"
        )
        parsed.turns.append(
            RawTurn(
                speaker=require_str(message.get("role"), f"{where}.role"),
                content=text,
                name=optional_str(message.get("name"), f"{where}.name"),
            )
        )
    system = optional_str(value.get("system"), "system")
    if system and not (parsed.turns and parsed.turns[0].speaker.casefold() == "system"):
        parsed.turns.insert(0, RawTurn(speaker="system", content=system))
    parsed.images = _with_column(parsed.images, bare["image"], value.get("images"), "images")
    parsed.audios = _with_column(parsed.audios, bare["audio"], value.get("audios"), "audios")
    return parsed


def _with_column(inline: list[MediaRef], bare: int, column: Any, key: str) -> list[MediaRef]:
    listed = media_refs(column, key)
    if bare and inline:
        raise RecordRejected(
            "wrong_types", f"bare {key[:-1]} parts and {key[:-1]} parts with a payload are mixed"
        )
    if bare:
        return listed  # as many as the bare parts, or validation refuses the record
    if listed:
        # Media listed beside parts that carry their own would have no defined place.
        raise RecordRejected(
            "wrong_types", f"content parts carry their media; a {key} list beside them is unused"
        )
    return inline


def _parts_to_text(parts: list[Any], where: str, parsed: ParsedRecord, bare: dict[str, int]) -> str:
    pieces = []
    for j, part in enumerate(parts):
        at = f"{where}.content[{j}]"
        part = require_dict(part, at)
        kind = part.get("type")
        if kind == "text":
            pieces.append(require_str(part.get("text", part.get("value")), f"{at}.text"))
        elif kind in IMAGE_KINDS or kind in AUDIO_KINDS:
            image = kind in IMAGE_KINDS
            ref = _payload(part, kind, at)
            if ref is None:
                bare["image" if image else "audio"] += 1
            else:
                (parsed.images if image else parsed.audios).append(ref)
            pieces.append(IMAGE_PLACEHOLDER if image else AUDIO_PLACEHOLDER)
        elif kind in VIDEO_KINDS:
            raise RecordRejected(
                "unsupported_media",
                f"{at} is a {kind} part; roleforge carries images and audio only",
            )
        else:
            raise RecordRejected("wrong_types", f"{at}.type {kind!r} is not a supported part")
    return PART_SEPARATOR.join(pieces)


def _payload(part: dict[str, Any], kind: str, at: str) -> MediaRef | None:
    """Return the media a part carries, or None for a bare part (HF / TRL)."""
    if kind == "input_audio":
        audio = require_dict(part.get("input_audio"), f"{at}.input_audio")
        optional_str(audio.get("format"), f"{at}.input_audio.format")
        return MediaRef(base64=require_str(audio.get("data"), f"{at}.input_audio.data"))
    # OpenAI nests the URL under the kind's key ({"url": ...}); some exporters write the
    # string there directly; LLaMA-Factory writes it in `value`; HF datasets in `path`/`url`.
    payload = part.get(kind, part.get("value", part.get("path", part.get("url"))))
    if isinstance(payload, dict):
        if isinstance(payload.get("bytes"), bytes | bytearray):
            return MediaRef(raw=bytes(payload["bytes"]), path=optional_str(payload.get("path"), at))
        payload = payload.get("url", payload.get("path"))
    if payload is None:
        if kind.endswith("_url"):
            raise RecordRejected("wrong_types", f"{at}.{kind}.url must be a string, not missing")
        return None
    return MediaRef.from_text(require_str(payload, f"{at}.{kind}"))
