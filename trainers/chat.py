"""Canonical records as chat conversations: persona in the system prompt, speakers named."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER

_PLACEHOLDER = re.compile(f"({re.escape(IMAGE_PLACEHOLDER)}|{re.escape(AUDIO_PLACEHOLDER)})")
_KIND = {IMAGE_PLACEHOLDER: "image", AUDIO_PLACEHOLDER: "audio"}


class _KeepMissing(dict):
    """format_map mapping that leaves unknown `{fields}` of a user template as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass
class ChatTurn:
    """One chat message: role, text with placeholders, and the media it carries in order."""

    role: str
    text: str
    media: list[tuple[str, bytes]] = field(default_factory=list)  # ("image"|"audio", bytes)

    def parts(self) -> list[dict[str, Any]]:
        """Return the content as processor parts: text, image and audio entries in order."""
        if IMAGE_PLACEHOLDER not in self.text and AUDIO_PLACEHOLDER not in self.text:
            return [{"type": "text", "text": self.text}] if self.text else []
        parts: list[dict[str, Any]] = []
        for piece in _PLACEHOLDER.split(self.text):
            if piece in _KIND:
                parts.append({"type": _KIND[piece]})
            elif piece:
                parts.append({"type": "text", "text": piece})
        return parts

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.media if k == kind)


@dataclass
class ChatSample:
    """A record as chat turns for one played character, with what evaluation needs to know."""

    record_id: str
    character: str
    turns: list[ChatTurn]
    speakers: list[str]  # names of the other speakers, for out-of-character leakage
    catchphrases: list[str]
    dropped_media: int = 0  # media items removed because the model cannot take them

    @property
    def has_system(self) -> bool:
        return bool(self.turns) and self.turns[0].role == "system"


class ChatFormatter:
    """Turns canonical records into ChatSamples.

    The character's profile becomes the system prompt (`system_template`), the character's
    own lines are assistant turns, and every other speaker becomes a user turn prefixed
    with their name (CharacterEval style). Consecutive user lines merge into one turn so
    templates that require alternating roles accept the conversation. Media of a modality
    not in `keep` is removed with its placeholder and counted.
    """

    def __init__(self, system_template: str, keep: frozenset[str] = frozenset({"image", "audio"})):
        self.system_template = system_template
        self.keep = keep

    def system_prompt(self, character: dict[str, Any] | None) -> str | None:
        """Return the persona system prompt for `character`, or None when it has no name."""
        if not character or not character.get("name"):
            return None
        values = _KeepMissing(
            name=character.get("name") or "",
            profile=character.get("profile") or "",
            greeting=character.get("greeting") or "",
            catchphrases="; ".join(character.get("catchphrases") or []),
        )
        return self.system_template.format_map(values).strip()

    def format(self, record: dict[str, Any]) -> ChatSample:
        """Return the ChatSample of one canonical record dict."""
        images = iter(m["bytes"] for m in record.get("images") or [])
        audios = iter(m["bytes"] for m in record.get("audios") or [])
        character = record.get("character") or {}
        systems: list[str] = []
        persona = self.system_prompt(character)
        if persona:
            systems.append(persona)
        turns: list[ChatTurn] = []
        speakers: list[str] = []
        dropped = 0
        for message in record["messages"]:
            text, media, lost = self._take_media(message.get("content") or "", images, audios)
            dropped += lost
            role = message["role"]
            if role == "system":
                if text.strip():
                    systems.append(text.strip())
                continue
            if role == "user":
                name = message.get("name")
                if name:
                    text = f"{name}: {text}"
                    if name not in speakers:
                        speakers.append(name)
                if turns and turns[-1].role == "user":
                    turns[-1].text += "\n" + text
                    turns[-1].media.extend(media)
                    continue
            turns.append(ChatTurn(role=role, text=text, media=media))
        if systems:
            turns.insert(0, ChatTurn(role="system", text="\n\n".join(systems)))
        return ChatSample(
            record_id=record["id"],
            character=character.get("name") or "unknown",
            turns=turns,
            speakers=speakers,
            catchphrases=list(character.get("catchphrases") or []),
            dropped_media=dropped,
        )

    def _take_media(self, content: str, images, audios) -> tuple[str, list[tuple[str, bytes]], int]:
        if IMAGE_PLACEHOLDER not in content and AUDIO_PLACEHOLDER not in content:
            return content, [], 0  # most turns: nothing to take
        media: list[tuple[str, bytes]] = []
        out: list[str] = []
        dropped = 0
        for piece in _PLACEHOLDER.split(content):
            if piece in _KIND:
                kind = _KIND[piece]
                data = next(images if kind == "image" else audios)
                if kind in self.keep:
                    media.append((kind, data))
                    out.append(piece)
                else:
                    dropped += 1
            else:
                out.append(piece)
        text = "".join(out)
        if dropped:
            # A removed placeholder leaves doubled spaces or a leading blank behind.
            text = re.sub(r"[ \t]{2,}", " ", text).strip()
        return text, media, dropped
