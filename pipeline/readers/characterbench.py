"""CharacterBench (thu-coai/CharacterBench), `eval_data/raw_data/<dimension>_test.json`.

    [{"character_name", "character_profile", "user_name", "greeting",
      "dialogue": [{"turn": 1, "speaker": "user" | <character_name>, "utterance",
                    "label"?: ["语言风格", ...]}],
      "data_source", "messages": {...}, "response_messages": {"model", "speaker", "response"},
      "annotation_score", "translation_en": {the same fields in English}}]

Turns whose speaker is the character are its; `user` is the user (named `user_name` unless
that is just "user"/"用户"). The greeting is the character's greeting, not a turn. Per-turn
labels (what a reply tests) are not carried: they are counted as the unmapped field
`dialogue[].label`. A `character_profile` that is an object (姓名, 昵称, ...) is read as a
CharacterEval profile (every field in the profile, 昵称 as aliases). Records that spread
their profile over top-level keys (中文名, 性别, ...) keep no profile; those keys are
counted as unmapped. The annotated model response, its score and the English translation
are counted as unmapped too: the response is a scored model output, not a reference.
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
from pipeline.readers.charactereval import profile_character
from pipeline.record.characters import make_character
from pipeline.record.rejection import RecordRejected

MAPPED = frozenset({"character_name", "character_profile", "user_name", "greeting", "dialogue"})
TURN_KEYS = frozenset({"turn", "speaker", "utterance"})
GENERIC_USER_NAMES = {"user", "用户"}


def parse_characterbench(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a CharacterBench dialogue."""
    name = require_str(value.get("character_name"), "character_name").strip()
    if not name:
        raise RecordRejected("wrong_types", "character_name is empty")
    user = (optional_str(value.get("user_name"), "user_name") or "").strip()
    user_name = None if user.casefold() in GENERIC_USER_NAMES else user or None
    turns = []
    turn_fields: set[str] = set()
    for i, turn in enumerate(require_list(value.get("dialogue"), "dialogue")):
        turn = require_dict(turn, f"dialogue[{i}]")
        speaker = require_str(turn.get("speaker"), f"dialogue[{i}].speaker").strip()
        text = require_str(turn.get("utterance"), f"dialogue[{i}].utterance")
        turn_fields.update(f"dialogue[].{k}" for k in turn if k not in TURN_KEYS)
        is_user = speaker.casefold() == "user"
        turns.append(RawTurn(speaker=speaker, content=text, name=user_name if is_user else None))
    greeting = optional_str(value.get("greeting"), "greeting") or None
    profile = value.get("character_profile")
    if isinstance(profile, dict):
        # Some files hold a structured profile (姓名, 昵称, ...), written as CharacterEval's.
        character = {**profile_character(name, profile), "greeting": greeting}
    else:
        text = optional_str(profile, "character_profile") or None
        character = make_character(name, profile=text, greeting=greeting)
    return ParsedRecord(
        turns=turns,
        character=character,
        unmapped=unmapped_keys(value, MAPPED) + sorted(turn_fields),
    )
