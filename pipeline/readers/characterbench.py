"""CharacterBench (thu-coai/CharacterBench), `eval_data/raw_data/<dimension>_test.json`.

    [{"character_name", "character_profile", "user_name", "greeting",
      "dialogue": [{"turn": 1, "speaker": "user" | "character" | <character_name>,
                    "utterance", "label"?: ["语言风格", ...]}],
      "reference_response"?: {"turn", "speaker", "utterance", "label"},
      "user_type"?: "pure_user" | "related_character", "user_profile"?, "social_relation"?,
      "character_type"?, "linguistic_features"?: {"经典台词语录": [...], "常用表达": [...]},
      "中文名"?: [...], "性别"?: [...], "经历"?: [...], ...   (attributes, each a list)
      "data_source", "messages": {...}, "response_messages": {"model", "speaker", "response"},
      "annotation_score", "translation_en": {...}, "gold", "pred_zh", ...}]

Turns whose speaker is the character (its name, or the word "character") are its; `user`
is the user (named `user_name` unless that is "user", "用户" or "None"). The greeting is
the character's greeting, not a turn. Every dialogue ends on a user turn; where the file
gives the character's `reference_response` to it, that reply is the last character turn.
Per-turn labels (what a reply tests) are not carried: they are counted as the unmapped
field `dialogue[].label`.

Profiles: `character_profile` is prose, or (some files) an object read as a CharacterEval
profile (every field in the profile, 昵称 as aliases). About a fifth of the records also
spread a structured profile over top-level keys (中文名, 性别, 经历, ..., each a list) with
`linguistic_features`. When the user is an ordinary user (`user_type: pure_user`) those
are the character's: they join the profile as `key：value` lines after the prose, name
keys (中文名, 别名, ...) become aliases and 经典台词语录 / 常用表达 catchphrases. When the
user is itself a character (`related_character`) the file holds both people's attributes
in that one flat map, the user's written over the character's (in 89 of the 116 such
records of the published files 中文名 names the user): nothing of it can be told apart,
so it is not carried and is counted once as `attributes (merged with the user's)`.
The annotated model response, its score, the graders' predictions and the English
translation are counted as unmapped: the response is a scored model output, not a reference.
"""

from __future__ import annotations

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
from pipeline.readers.charactereval import ALIAS_KEYS, list_items, profile_character, profile_text
from pipeline.record.characters import make_character
from pipeline.record.rejection import RecordRejected

MAPPED = frozenset(
    {"character_name", "character_profile", "user_name", "greeting", "dialogue", "user_type"}
)
TURN_KEYS = frozenset({"turn", "speaker", "utterance"})
GENERIC_USER_NAMES = {"user", "用户", "none"}
# Top-level keys of the published files that are not profile attributes: bookkeeping of
# the benchmark's construction and grading (a `pred_` prefix: the graders' predictions).
NOT_ATTRIBUTES = frozenset(
    {
        "data_source",
        "messages",
        "response_messages",
        "response_usage",
        "annotation_score",
        "translation_en",
        "id",
        "gold",
        "task",
        "eval_response",
        "filter_result",
        "filter_usage",
        "prototypes",
        "source",
        "CATEGORY_ZH",
        "character_type",
        "linguistic_features",
        "user_profile",
        "social_relation",
        "played_relation",
        "reference_response",
    }
)
NAME_ATTRIBUTES = ("中文名", "本名", "全名", "原名", "其他名", "外文名", "外文名称", *ALIAS_KEYS)
CATCHPHRASE_FEATURES = ("经典台词语录", "常用表达")
RELATED_CHARACTER = "related_character"
MERGED_ATTRIBUTES = "attributes (merged with the user's)"


def parse_characterbench(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a CharacterBench dialogue."""
    name = require_str(value.get("character_name"), "character_name").strip()
    if not name:
        raise RecordRejected("wrong_types", "character_name is empty")
    user = (optional_str(value.get("user_name"), "user_name") or "").strip()
    user_name = None if user.casefold() in GENERIC_USER_NAMES else user or None
    dialogue = [
        require_dict(turn, f"dialogue[{i}]")
        for i, turn in enumerate(require_list(value.get("dialogue"), "dialogue"))
    ]
    reference = value.get("reference_response")
    if isinstance(reference, dict) and (not dialogue or _speaker(dialogue[-1], 0) == "user"):
        dialogue.append(reference)
    turns = []
    turn_fields: set[str] = set()
    for i, turn in enumerate(dialogue):
        speaker = _speaker(turn, i)
        text = require_str(turn.get("utterance"), f"dialogue[{i}].utterance")
        turn_fields.update(f"dialogue[].{k}" for k in turn if k not in TURN_KEYS)
        is_user = speaker.casefold() == "user"
        turns.append(RawTurn(speaker=speaker, content=text, name=user_name if is_user else None))
    attributes = {k: v for k, v in value.items() if _is_attribute(k, v)}
    merged = value.get("user_type") == RELATED_CHARACTER
    unmapped = [
        k
        for k in unmapped_keys(value, MAPPED)
        if k not in attributes and not (k == "linguistic_features" and not merged)
    ]
    if merged and (attributes or value.get("linguistic_features")):
        unmapped.append(MERGED_ATTRIBUTES)
    character = _character(name, value, {} if merged else attributes, merged)
    return ParsedRecord(turns=turns, character=character, unmapped=unmapped + sorted(turn_fields))


def _speaker(turn: dict[str, Any], i: int) -> str:
    return require_str(turn.get("speaker"), f"dialogue[{i}].speaker").strip()


def _is_attribute(key: str, value: Any) -> bool:
    return (
        key not in MAPPED
        and key not in NOT_ATTRIBUTES
        and not key.startswith("pred_")
        and isinstance(value, list)
        and all(isinstance(v, str | int | float) for v in value)
    )


def _character(
    name: str, value: dict[str, Any], attributes: dict[str, list[Any]], merged: bool
) -> dict[str, Any]:
    greeting = optional_str(value.get("greeting"), "greeting") or None
    profile = value.get("character_profile")
    if isinstance(profile, dict):
        # Some files hold a structured profile (姓名, 昵称, ...), written as CharacterEval's.
        base = profile_character(name, profile)
    else:
        base = make_character(name, profile=optional_str(profile, "character_profile") or None)
    features = value.get("linguistic_features")
    features = features if isinstance(features, dict) and not merged else {}
    lines = [profile_text({**attributes, **features})] if attributes or features else []
    text = "\n".join(t for t in [base["profile"] or "", *lines] if t) or None
    aliases = [a for key in NAME_ATTRIBUTES for a in list_items(attributes.get(key))]
    phrases = [
        p for key in CATCHPHRASE_FEATURES for p in list_items(features.get(key), split=False)
    ]
    return make_character(
        name,
        profile=text,
        greeting=greeting,
        catchphrases=list(dict.fromkeys([*base["catchphrases"], *phrases])),
        aliases=[*base["aliases"], *aliases],
    )
