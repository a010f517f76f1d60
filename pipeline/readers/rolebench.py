"""RoleBench (InteractiveNLP-Team/RoleLLM-public; data on the Hub as ZenMoore/RoleBench).

    rolebench-eng/{instruction,role}-generalization/{role_specific,general}/{train,test}.jsonl
    rolebench-zh/{role_specific,general}/{train,test}.jsonl:
      {"role": "Sheldon Cooper", "question": "...", "generated": ["reply", "reply", ...]}
    profiles-eng/desc.json, profiles-zh/desc.json (as `characters:`):
      {"Sheldon Cooper": "<role description>", ...}

Role-specific and general instruction files share the one shape. `generated` holds several
replies written for the same question ("5 of these serve as ground truth candidates", the
dataset's README): the first is the training target, as OpenCompass trains on and scores
against `generated[0]`; the others are kept as the record's `references`, so evaluation
scores a reply against every one (the best match counts), rather than being turned into
near-identical records that a per-conversation split could scatter across splits.
"""

from __future__ import annotations

from typing import Any

from pipeline.readers.assemble import (
    ParsedRecord,
    RawTurn,
    require_list,
    require_str,
    unmapped_keys,
)
from pipeline.readers.charactereval import maps_names_to
from pipeline.record.characters import make_character
from pipeline.record.rejection import RecordRejected

MAPPED = frozenset({"role", "question", "generated"})


def parse_rolebench(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a RoleBench instruction; `role` is the character played."""
    role = require_str(value.get("role"), "role").strip()
    if not role:
        raise RecordRejected("wrong_types", "role is empty")
    question = require_str(value.get("question"), "question")
    replies = [
        require_str(reply, f"generated[{i}]")
        for i, reply in enumerate(require_list(value.get("generated"), "generated"))
    ]
    if not replies:
        raise RecordRejected("wrong_types", "generated holds no reply")
    return ParsedRecord(
        turns=[RawTurn("user", question), RawTurn("assistant", replies[0])],
        character=make_character(role),
        references=replies[1:],
        unmapped=unmapped_keys(value, MAPPED),
    )


def is_description_map(value: Any) -> bool:
    """Return whether a JSON value maps character names to description text (desc.json)."""
    return maps_names_to(value, str)


def described_characters(value: dict[str, str]) -> list[dict[str, Any]]:
    """Return one character per entry of a desc.json map, its description as the profile."""
    return [
        make_character(name.strip(), profile=text.strip() or None) for name, text in value.items()
    ]
