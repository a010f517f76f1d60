"""From a parsed corpus record to a canonical WORK record: roles, character, media bytes.

Format readers only parse their spelling into a `ParsedRecord`; everything every format
shares (speaker-to-role mapping, the character join, loading media safely) happens here once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline.readers.files import is_utf8_encodable
from pipeline.recipe import MediaLimits, SourceConfig
from pipeline.record.characters import CharacterBook, clean_aliases, names_of
from pipeline.record.ids import original_id
from pipeline.record.media import (
    MediaRoot,
    decode_base64,
    decode_data_uri,
    is_data_uri,
    read_media_file,
)
from pipeline.record.rejection import RecordRejected
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER

ROLE_ALIASES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "char": "assistant",
    "character": "assistant",
}
# Tool-calling turns have no place in a role-play sample; they are refused, not guessed at.
TOOL_ROLES = {"tool", "function", "function_call", "observation", "ipython", "tool_call"}
# Speakers that are nobody: stage narration (ChatHaruhi's 旁白, scene and '''Scene''', an
# empty speaker). Narration becomes a nameless `user` turn in action markup: context the
# model reads, never a line it is trained to say, and never a user called "旁白".
NARRATION_SPEAKERS = {"", "旁白", "narrator", "narration", "scene", "场景", "画外音"}
# Actions, stage directions and inner thoughts are kept in the text as *...*, the markup
# PIPPA, character cards and ChatHaruhi already use; readers convert their own spellings.
ACTION_MARK = "*"
# Media kinds the canonical record does not carry: a record with one is refused, not
# passed on with the placeholder as literal text.
UNSUPPORTED_PLACEHOLDERS = ("<video>",)
UNSUPPORTED_MEDIA_KEYS = ("video", "videos")


@dataclass(frozen=True)
class MediaRef:
    """One media item as the corpus wrote it: a path, a data URI, bare base64, or raw bytes."""

    path: str | None = None
    data_uri: str | None = None
    base64: str | None = None
    raw: bytes | None = None

    @classmethod
    def from_text(cls, value: str) -> MediaRef:
        return cls(data_uri=value) if is_data_uri(value) else cls(path=value)


@dataclass
class RawTurn:
    """One turn as the corpus wrote it; `speaker` is a role word or a speaker's name."""

    speaker: str
    content: str
    name: str | None = None


@dataclass
class ParsedRecord:
    """A corpus record parsed from its format, before roles, character and media are resolved."""

    turns: list[RawTurn]
    images: list[MediaRef] = field(default_factory=list)
    audios: list[MediaRef] = field(default_factory=list)
    character: dict[str, Any] | None = None
    # True when the reader only guessed the character (e.g. the last speaker); the
    # source's `character:` then wins.
    character_guessed: bool = False
    # True when the format attaches media to the first user turn instead of placeholders.
    media_in_first_user_turn: bool = False
    # Names the played character speaks under in this record, whoever it resolves to
    # (Character-LLM writes "Beethoven" in turns of "Ludwig van Beethoven").
    voices: list[str] = field(default_factory=list)
    # Further accepted replies to the last character turn (the record's `references`).
    references: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # field names nothing carries


@dataclass(frozen=True)
class FileContext:
    """What assembling the records of one corpus file needs to know about its source."""

    source: SourceConfig
    limits: MediaLimits
    book: CharacterBook
    file_ref: str  # the file relative to the recipe folder, for source_ref
    file_key: str  # the file relative to the source's path folder, for the record id
    media_root: MediaRoot

    def source_ref(self, key: str) -> str:
        return f"{self.file_ref}:{key}"

    def record_id(self, key: str) -> str:
        return original_id(self.source.name, f"{self.file_key}:{key}")


def is_narration(speaker: str) -> bool:
    """Return whether a speaker is stage narration rather than a person."""
    return speaker.strip().strip("'\"[]()").strip().casefold() in NARRATION_SPEAKERS


def mark_action(text: str) -> str:
    """Return `text` in the action markup (*...*), unless it already is."""
    text = text.strip()
    if not text or (len(text) > 1 and text[0] == ACTION_MARK and text[-1] == ACTION_MARK):
        return text
    return f"{ACTION_MARK}{text}{ACTION_MARK}"


def map_speaker(
    speaker: str, name: str | None, character: dict[str, Any] | None
) -> tuple[str, str | None]:
    """Return (canonical role, speaker name) for one turn, or raise unknown_role.

    The played character (by its name or any alias) speaks as `assistant`; with a known
    character every other named speaker is a `user` whose `name` is kept, which is how
    multi-speaker scenes survive. Narration is a nameless `user` turn (see mark_action).
    """
    word = speaker.strip()
    folded = word.casefold()
    played = {n.casefold() for n in names_of(character)}
    if played and (folded in played or (name is not None and name.strip().casefold() in played)):
        return "assistant", None
    role = ROLE_ALIASES.get(folded)
    if role == "assistant" and name and played:
        # Another persona voiced by the model side of a scene is still not the one played.
        return "user", name
    if role is not None:
        return role, name if role == "user" else None
    if folded in TOOL_ROLES:
        raise RecordRejected("unknown_role", f"turn role {speaker!r} is not a role-play role")
    if is_narration(word):
        return "user", None
    if not played:
        raise RecordRejected(
            "unknown_role",
            f"speaker {speaker!r} maps to no role and the record names no character to play",
        )
    return "user", word


def assemble_record(parsed: ParsedRecord, key: str, ctx: FileContext) -> dict[str, Any]:
    """Return the canonical WORK record for one parsed corpus record, media bytes loaded."""
    named = parsed.character
    if parsed.character_guessed and ctx.source.character:
        named = None
    character = ctx.book.resolve(named, ctx.source.character)
    if character is not None and parsed.voices:
        aliases = clean_aliases(character["name"], [*character["aliases"], *parsed.voices])
        character = {**character, "aliases": aliases}
    messages = []
    for turn in parsed.turns:
        role, name = map_speaker(turn.speaker, turn.name, character)
        content = turn.content
        if role == "user" and name is None and is_narration(turn.speaker):
            content = mark_action(content)
        messages.append({"role": role, "name": name, "content": content})
    _refuse_unsupported_placeholders(messages)
    if parsed.media_in_first_user_turn or ctx.source.media_placement == "first_user_turn":
        place_media_in_first_user_turn(messages, len(parsed.images), len(parsed.audios))
    record = {
        "id": ctx.record_id(key),
        "parent_id": None,
        "source": ctx.source.name,
        "split": None,
        "character": character,
        "messages": messages,
        "references": _references(parsed.references, messages),
        "images": [load_media(ref, ctx) for ref in parsed.images],
        "audios": [load_media(ref, ctx) for ref in parsed.audios],
        "augmentation": None,
        "source_ref": ctx.source_ref(key),
    }
    _require_encodable_text(record)
    return record


def _references(references: list[str], messages: list[dict[str, Any]]) -> list[str] | None:
    """Return the further references of the last character turn: blank ones and repeats of
    that turn (or of each other) left out; None when none is left."""
    last = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), None)
    if last is None:
        return None
    seen = {last.strip()}
    out = []
    for reference in references:
        if reference.strip() and reference.strip() not in seen:
            seen.add(reference.strip())
            out.append(reference)
    return out or None


def place_media_in_first_user_turn(
    messages: list[dict[str, Any]], images: int, audios: int
) -> None:
    """Put placeholders for every media item at the start of the first user turn.

    Only a record with media and no placeholder at all is changed: placeholders that exist
    but do not match stay as written, for validation to refuse.
    """
    if not (images or audios):
        return
    if any(
        IMAGE_PLACEHOLDER in m["content"] or AUDIO_PLACEHOLDER in m["content"] for m in messages
    ):
        return
    first_user = next((m for m in messages if m["role"] == "user"), None)
    if first_user is not None:
        marks = IMAGE_PLACEHOLDER * images + AUDIO_PLACEHOLDER * audios
        first_user["content"] = f"{marks}\n{first_user['content']}"


def refuse_unsupported_media(value: dict[str, Any]) -> None:
    """Raise unsupported_media when a raw record lists media of a kind we do not carry."""
    for key in UNSUPPORTED_MEDIA_KEYS:
        if value.get(key):
            raise RecordRejected(
                "unsupported_media",
                f"the record has {key!r}; roleforge carries images and audio only",
            )


def _refuse_unsupported_placeholders(messages: list[dict[str, Any]]) -> None:
    for i, m in enumerate(messages):
        lowered = m["content"].casefold()
        for placeholder in UNSUPPORTED_PLACEHOLDERS:
            if placeholder in lowered:
                raise RecordRejected(
                    "unsupported_media",
                    f"messages[{i}] has a {placeholder} placeholder; "
                    "roleforge carries images and audio only",
                )


def unmapped_keys(value: dict[str, Any], mapped: frozenset[str] | set[str]) -> list[str]:
    """Return the keys of a raw record that its reader does not map, sorted."""
    return sorted(str(k) for k in value if k not in mapped)


def load_media(ref: MediaRef, ctx: FileContext) -> dict[str, Any]:
    """Return the storage form {bytes, path} of one media item, refusing it per the limits."""
    max_bytes = ctx.limits.max_media_bytes
    if ref.raw is not None:
        if len(ref.raw) > max_bytes:
            raise RecordRejected(
                "media_too_large",
                f"embedded media has {len(ref.raw)} bytes, over the limit of {max_bytes}",
            )
        return {"bytes": ref.raw, "path": ref.path}
    if ref.data_uri is not None:
        return {"bytes": decode_data_uri(ref.data_uri, max_bytes), "path": None}
    if ref.base64 is not None:
        return {"bytes": decode_base64(ref.base64, max_bytes), "path": None}
    if ref.path is not None:
        with unusable_path_rejected(ref.path):
            data = read_media_file(ref.path, ctx.media_root, max_bytes)
        return {"bytes": data, "path": ref.path}
    raise RecordRejected("wrong_types", "a media item has neither bytes, a path nor a data URI")


@contextmanager
def unusable_path_rejected(path: str) -> Iterator[None]:
    """Turn an OSError or ValueError raised on a media path (an embedded NUL byte, a name
    too long for the filesystem) into the record's missing_media rejection."""
    try:
        yield
    except (OSError, ValueError) as exc:
        raise RecordRejected("missing_media", f"{path[:200]!r} cannot name a file: {exc}") from None


def _require_encodable_text(record: dict[str, Any]) -> None:
    # Lone surrogates (from "\ud800" escapes) parse as JSON but cannot be written as UTF-8.
    texts = [m["content"] for m in record["messages"]] + [m["name"] for m in record["messages"]]
    texts += record["references"] or []
    if record["character"]:
        c = record["character"]
        texts += [c["name"], c["profile"], c["greeting"], *c["catchphrases"], *c["aliases"]]
    texts += [m["path"] for m in record["images"] + record["audios"]]
    for text in texts:
        if text is not None and not is_utf8_encodable(text):
            raise RecordRejected("invalid_utf8", f"text is not valid Unicode: {text[:60]!r}")


# Small type checks shared by the format readers; each raises wrong_types naming the field.


def require_str(value: Any, where: str) -> str:
    """Return `value` if it is a string, else raise wrong_types naming `where`."""
    if not isinstance(value, str):
        raise RecordRejected("wrong_types", f"{where} must be a string, not {_kind(value)}")
    return value


def optional_str(value: Any, where: str) -> str | None:
    """Return `value` if it is a string or None, else raise wrong_types naming `where`."""
    return None if value is None else require_str(value, where)


def require_list(value: Any, where: str) -> list[Any]:
    """Return `value` if it is a list, else raise wrong_types naming `where`."""
    if not isinstance(value, list):
        raise RecordRejected("wrong_types", f"{where} must be a list, not {_kind(value)}")
    return value


def require_dict(value: Any, where: str) -> dict[str, Any]:
    """Return `value` if it is an object, else raise wrong_types naming `where`."""
    if not isinstance(value, dict):
        raise RecordRejected("wrong_types", f"{where} must be an object, not {_kind(value)}")
    return value


def media_refs(value: Any, where: str) -> list[MediaRef]:
    """Return the media items of a field that holds one path, a list of them, or storage dicts."""
    if value is None:
        return []
    if isinstance(value, str):
        return [MediaRef.from_text(value)]
    refs = []
    for i, item in enumerate(require_list(value, where)):
        if isinstance(item, str):
            refs.append(MediaRef.from_text(item))
        elif isinstance(item, dict) and isinstance(item.get("bytes"), bytes | bytearray):
            refs.append(
                MediaRef(raw=bytes(item["bytes"]), path=optional_str(item.get("path"), where))
            )
        elif isinstance(item, dict) and isinstance(item.get("path") or item.get("url"), str):
            refs.append(MediaRef.from_text(item.get("path") or item["url"]))
        else:
            raise RecordRejected(
                "wrong_types", f"{where}[{i}] must be a path, a data URI or {{bytes, path}}"
            )
    return refs


def _kind(value: Any) -> str:
    return "missing" if value is None else type(value).__name__
