"""Which corpus format a record is written in, judged from its whole required shape.

Every format declares what a record must hold to be read by it: its top-level keys with
their kinds, and for turn lists the keys of every turn. A format fits only when all of it
holds; one distinctive key (a `dialogue`, a `role`) is never enough. When several fit, the
most specific (the one that requires the most) wins, and `Detection.also_fit` names the
others so the ingest report can say which was chosen over what. When none fits, the
formats that came closest are named with what each still needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.readers.arrow import CANONICAL_KEYS
from pipeline.readers.risuai import EXPORT_TYPES, is_chat
from pipeline.readers.tavern import is_card

# How many formats an error names as the closest.
CLOSEST = 3
# Part types whose payload sits under the key named like the type (OpenAI chat API).
OPENAI_PARTS = ("text", "image_url", "input_audio", "audio_url")
# LLaMA-Factory's newer multimodal spelling: every part holds its payload in `value`.
VALUE_PARTS = ("text", "image", "image_url", "audio", "audio_url", "video", "video_url")
# A part naming only its kind (Hugging Face / TRL): the media sit in the record's column.
BARE_MEDIA_PARTS = ("image", "audio", "video")


@dataclass(frozen=True)
class Need:
    """One thing a format requires of a record: a key holding a value that passes `check`."""

    key: str
    what: str  # what the key must hold, as the error tells the user
    check: Callable[[Any], bool]
    weight: int = 1  # how much this need narrows the shape (turn keys count too)

    def met(self, value: dict[str, Any]) -> bool:
        return self.key in value and self.check(value[self.key])

    def describe(self) -> str:
        return f"{self.key} ({self.what})"


@dataclass(frozen=True)
class Shape:
    """The whole required shape of one format; `fits` is every need met (and `extra`)."""

    format: str
    needs: tuple[Need, ...]
    extra: Callable[[dict[str, Any]], bool] | None = None
    extra_what: str = ""

    @property
    def specificity(self) -> int:
        return sum(n.weight for n in self.needs) + (1 if self.extra else 0)

    def unmet(self, value: dict[str, Any]) -> list[str]:
        missing = [n.describe() for n in self.needs if not n.met(value)]
        if self.extra is not None and not missing and not self.extra(value):
            missing.append(self.extra_what)
        return missing

    def fits(self, value: dict[str, Any]) -> bool:
        # The hot path (every record of an auto source): stops at the first unmet need.
        return all(n.met(value) for n in self.needs) and (self.extra is None or self.extra(value))


@dataclass
class Detection:
    """What detection made of a record or a file: the chosen format and what else fit."""

    format: str | None
    also_fit: list[str] = field(default_factory=list)
    keys_seen: list[str] = field(default_factory=list)
    # (format, what it still needs) for the formats that came closest, best first.
    closest: list[tuple[str, list[str]]] = field(default_factory=list)

    def summary(self) -> str:
        """Return e.g. "mmrole (also fits: sharegpt)" for the ingest report."""
        if self.format is None:
            return "no format"
        return self.format + (f" (also fits: {', '.join(self.also_fit)})" if self.also_fit else "")

    def refusal(self) -> str:
        """Return why no reader fits, naming the keys seen and what the closest formats need."""
        keys = ", ".join(self.keys_seen[:12]) or "none"
        close = "; ".join(f"{fmt} needs {', '.join(needs)}" for fmt, needs in self.closest)
        return f"keys seen: {keys}; closest: {close}" if close else f"keys seen: {keys}"


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _anything(value: Any) -> bool:
    return True


def _turns(*spellings: tuple[str, ...]) -> Callable[[Any], bool]:
    """Return a check: a list whose every item is an object holding one spelling's keys."""

    def check(value: Any) -> bool:
        return isinstance(value, list) and all(
            isinstance(t, dict) and any(all(k in t for k in keys) for keys in spellings)
            for t in value
        )

    return check


def _turns_need(key: str, *spellings: tuple[str, ...]) -> Need:
    what = " or ".join("{" + ", ".join(keys) + "}" for keys in spellings)
    return Need(key, f"a list of {what}", _turns(*spellings), weight=1 + len(spellings[0]))


def _str(key: str) -> Need:
    return Need(key, "a string", _is_str)


def _is_openai_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") in OPENAI_PARTS and part["type"] in part


def _is_value_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") in VALUE_PARTS and "value" in part


def _is_bare_media_part(part: Any) -> bool:
    return (
        isinstance(part, dict)
        and part.get("type") in BARE_MEDIA_PARTS
        and not ({"value", "url", "path"} & part.keys())
        and part["type"] not in part
    )


def _part_messages(content_ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """Return a check for a `messages` list: every turn {role, content} with a content that
    passes `content_ok`, and at least one content a list of parts."""

    def check(value: Any) -> bool:
        if not isinstance(value, list):
            return False
        # The cheap test first: most records have string contents and no parts at all.
        if not any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in value):
            return False
        return all(
            isinstance(m, dict) and _is_str(m.get("role")) and content_ok(m.get("content"))
            for m in value
        )

    return check


def _text_turns(value: Any) -> bool:
    # dataset_info "tags" let LLaMA-Factory files write ShareGPT's {from, value} in `messages`.
    return isinstance(value, list) and all(
        isinstance(m, dict)
        and (
            (_is_str(m.get("role")) and _is_str(m.get("content")))
            or (_is_str(m.get("from")) and _is_str(m.get("value")))
        )
        for m in value
    )


def _parts_of(is_part: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def content_ok(content: Any) -> bool:
        return isinstance(content, str) or (
            isinstance(content, list) and all(is_part(p) for p in content)
        )

    return content_ok


def _trl_part(part: Any) -> bool:
    return _is_bare_media_part(part) or (
        isinstance(part, dict) and part.get("type") == "text" and _is_str(part.get("text"))
    )


def _has_bare_media_part(value: dict[str, Any]) -> bool:
    return any(
        isinstance(m.get("content"), list) and any(_is_bare_media_part(p) for p in m["content"])
        for m in value["messages"]
    )


def _trl_media_column(value: dict[str, Any]) -> bool:
    return _is_list(value.get("images")) or _is_list(value.get("audios"))


def _parts_shape(fmt: str, spelling: str, is_part: Callable[[Any], bool]) -> Shape:
    what = f"a list of {{role, content: [{spelling}]}}"
    return Shape(fmt, (Need("messages", what, _part_messages(_parts_of(is_part)), 4),))


SHAPES: tuple[Shape, ...] = (
    Shape(
        "arrow", tuple(Need(k, "the canonical column", _anything) for k in sorted(CANONICAL_KEYS))
    ),
    Shape("pippa", (_str("bot_name"), _turns_need("conversation", ("message", "is_human")))),
    Shape("chatharuhi", (_turns_need("dialogue", ("role", "text")),)),
    Shape(
        "characterbench",
        (_str("character_name"), _turns_need("dialogue", ("speaker", "utterance"))),
    ),
    Shape("charactereval", (_str("role"), _str("context"))),
    Shape(
        "characterllm",
        (_str("character"), _turns_need("content", ("turn_role", "turn_content"))),
    ),
    # interview_single writes `reply` as a list, or (the alpaca/sft/vicuna results) as one object.
    Shape(
        "characterllm",
        (
            _str("question"),
            Need(
                "reply",
                "a list of {role, content} or one",
                lambda v: _turns(("role",))([v] if isinstance(v, dict) else v),
                weight=2,
            ),
        ),
    ),
    Shape("rolebench", (_str("role"), _str("question"), Need("generated", "a list", _is_list))),
    Shape("mmrole", (_str("role"), _turns_need("conversations", ("from", "value")))),
    Shape("sharegpt", (_turns_need("conversations", ("from", "value"), ("role", "content")),)),
    Shape("swift", (_turns_need("conversation", ("human", "assistant")),)),
    Shape(
        "llamafactory",
        (
            Need(
                "messages",
                "a list of {role, content: text} (or {from, value})",
                _text_turns,
                weight=3,
            ),
        ),
    ),
    _parts_shape("llamafactory", '{"type", "value"}', _is_value_part),
    _parts_shape(
        "openai",
        '{"type": "text", "text"} | {"type": "image_url", "image_url": {"url"}} | '
        '{"type": "input_audio", ...}',
        _is_openai_part,
    ),
    Shape(
        "trl",
        _parts_shape("trl", '{"type": "image"} | {"type": "text", "text"}', _trl_part).needs,
        extra=lambda v: _has_bare_media_part(v) and _trl_media_column(v),
        extra_what='a {"type": "image"} part and an images (or audios) list',
    ),
    Shape(
        "sillytavern",
        # Chats SillyTavern imports (Ooba, Agnai, CAI Tools) have no chat_metadata.
        (
            _str("user_name"),
            _str("character_name"),
            Need("create_date", "the chat's date", _anything),
        ),
    ),
    Shape("agnai", (_turns_need("messages", ("msg",)),)),
    Shape(
        "risuai",
        (
            Need("type", " or ".join(map(repr, EXPORT_TYPES)), lambda v: v in EXPORT_TYPES),
            Need(
                "data",
                "a chat {message: [{role, data}]} (or a list of them)",
                lambda v: is_chat(v) or (isinstance(v, list) and all(map(is_chat, v))),
                weight=3,
            ),
        ),
    ),
    # A group chat's lines are all messages: no header names the played character.
    Shape(
        "sillytavern",
        (
            _str("name"),
            Need("is_user", "true or false", lambda v: isinstance(v, bool)),
            _str("mes"),
        ),
    ),
    Shape(
        "tavern",
        (),
        extra=is_card,
        extra_what="a character card (spec chara_card_v2/v3 or v1 fields)",
    ),
)


# Most specific first (stable, so equals keep their order above): the first that fits wins.
_BY_SPECIFICITY = sorted(SHAPES, key=lambda s: -s.specificity)


def detect(value: Any) -> Detection:
    """Return the detection of one parsed record: the most specific format whose whole
    shape it holds, the others that fit too, or (none fitting) the closest formats."""
    if not isinstance(value, dict):
        return Detection(None)
    fitting: list[Shape] = []
    near: list[tuple[float, int, Shape, list[str]]] = []
    for order, shape in enumerate(SHAPES):
        unmet = shape.unmet(value)
        if not unmet:
            fitting.append(shape)
            continue
        # A key that is there with the wrong shape counts half: the user wrote that format
        # with a slip, and should hear what it needs.
        met = sum(n.weight if n.met(value) else 0.5 for n in shape.needs if n.key in value)
        # Canonical rows are our own output, never a slip of a user's layout.
        if met and shape.format != "arrow":
            near.append((-met / max(shape.specificity, 1), order, shape, unmet))
    keys = sorted(map(str, value))
    if fitting:
        best = max(fitting, key=lambda s: s.specificity)  # max keeps the first of equals
        others = list(dict.fromkeys(s.format for s in fitting if s.format != best.format))
        return Detection(best.format, also_fit=others, keys_seen=keys)
    near.sort(key=lambda n: n[:2])
    closest: list[tuple[str, list[str]]] = []
    for *_, shape, unmet in near:
        if shape.format not in (f for f, _ in closest):
            closest.append((shape.format, unmet))
    return Detection(None, keys_seen=keys, closest=closest[:CLOSEST])


_BY_FORMAT: dict[str, list[Shape]] = {}
for _shape in SHAPES:
    _BY_FORMAT.setdefault(_shape.format, []).append(_shape)


def fits_format(value: Any, fmt: str) -> bool:
    """Return whether a record holds the whole shape of format `fmt` (one of its shapes)."""
    return isinstance(value, dict) and any(s.fits(value) for s in _BY_FORMAT.get(fmt, ()))


def detect_format(value: Any) -> str | None:
    """Return the format name of one parsed record, or None when no format's shape fits
    (the same choice as `detect`, without gathering what else fits or why none does)."""
    if not isinstance(value, dict):
        return None
    return next((s.format for s in _BY_SPECIFICITY if s.fits(value)), None)
