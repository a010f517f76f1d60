"""CharacterEval (morecry/CharacterEval): Chinese novel and script scenes, and their profiles.

    data/test_data.jsonl (a pretty-printed JSON array despite its name):
      {"id", "role": <character played>, "novel_name",
       "context": "佟湘玉：（下楼）展堂。\\n老邢：你来得正好。"}
    data/character_profiles.json (as `characters:`):
      {"<role>": {"姓名", "昵称": "老默、默哥" | [...], "经典台词": [...], "人物性格", ...}}

Each context line is `speaker：text`; stage directions in full-width brackets （…） are
kept as actions in the *...* markup. A line without a speaker is narration.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.readers.assemble import (
    ParsedRecord,
    RawTurn,
    require_str,
    unmapped_keys,
)
from pipeline.record.characters import make_character
from pipeline.record.rejection import RecordRejected

MAPPED = frozenset({"role", "context"})
_STAGE_DIRECTION = re.compile(r"（([^（）]*)）")
_LINE = re.compile(r"^([^：:\n]{1,40})[：:](.*)$", re.DOTALL)
# Profile keys that also name the character or give its catchphrases.
NAME_KEYS = ("姓名", "name")
ALIAS_KEYS = ("昵称", "绰号", "别名", "外号", "nickname", "aliases")
CATCHPHRASE_KEYS = ("经典台词", "口头禅", "catchphrases")
_LIST_SEPARATORS = re.compile(r"[、,，;；/]")


def parse_charactereval(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a CharacterEval scene; `role` is the character played."""
    name = require_str(value.get("role"), "role").strip()
    if not name:
        raise RecordRejected("wrong_types", "role is empty")
    turns = []
    for line in require_str(value.get("context"), "context").split("\n"):
        if not line.strip():
            continue
        m = _LINE.match(line)
        speaker, text = (m.group(1).strip(), m.group(2)) if m else ("", line)
        turns.append(RawTurn(speaker=speaker, content=stage_directions_as_actions(text.strip())))
    return ParsedRecord(
        turns=turns, character=make_character(name), unmapped=unmapped_keys(value, MAPPED)
    )


def stage_directions_as_actions(text: str) -> str:
    """Return `text` with each （stage direction） in the *action* markup."""
    return _STAGE_DIRECTION.sub(lambda m: f"*{m.group(1).strip()}*", text)


def is_profile_map(value: Any) -> bool:
    """Return whether a JSON value maps character names to profile objects."""
    return maps_names_to(value, dict)


def maps_names_to(value: Any, kind: type) -> bool:
    """Return whether a JSON value maps character names (not a `name` field) to `kind`s."""
    return (
        isinstance(value, dict)
        and bool(value)
        and "name" not in value
        and all(isinstance(k, str) and isinstance(v, kind) for k, v in value.items())
    )


def profile_character(name: str, profile: dict[str, Any]) -> dict[str, Any]:
    """Return the character of one profile: every field as text, names as aliases."""
    aliases = [str(profile[k]) for k in NAME_KEYS if isinstance(profile.get(k), str)]
    for key in ALIAS_KEYS:
        aliases += list_items(profile.get(key))
    phrases = [p for key in CATCHPHRASE_KEYS for p in list_items(profile.get(key), split=False)]
    return make_character(
        name.strip(),
        profile=profile_text(profile) or None,
        catchphrases=list(dict.fromkeys(phrases)),
        aliases=aliases,
    )


_REMARK = re.compile(r"[（(][^（）()]*[）)]")


def profile_text(profile: dict[str, Any]) -> str:
    """Return a structured profile as text: one `key：value` line per field that has one."""
    return "\n".join(f"{key}：{_text(v)}" for key, v in profile.items() if _text(v))


def list_items(value: Any, split: bool = True) -> list[str]:
    """Return the items of a profile field: a list's, or a string's split at 、,;/ (with
    `split`; a bracketed remark dropped), blanks left out."""
    if isinstance(value, str):
        if not split:
            return [value] if value.strip() else []
        # "堂堂（小名）": the remark in brackets says what kind of name it is; not part of it.
        return [p for p in (_REMARK.sub("", p).strip() for p in _LIST_SEPARATORS.split(value)) if p]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int | float) and str(v).strip()]
    return []


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return "；".join(f"{k}：{_text(v)}" for k, v in value.items() if _text(v))
    if isinstance(value, list):
        return "、".join(_text(v) for v in value if _text(v))
    return "" if value is None else str(value).strip()
