"""ChatHaruhi (LC1332/Chat-Haruhi-Suzumiya) dialogues, e.g. `*_dialogue.jsonl`.

    {"dialogue": [{"role": <speaker name>, "text": "「...」"}], "source": "synthesized"}

A record does not say which speaker is played: the source's `character:` does (with the
persona from `characters/<name>/system_prompt.txt` as `persona:`); without it, the last
speaker, whose reply ChatHaruhi generated, is taken. Speakers `旁白`, `scene`,
`'''Scene'''` and the empty speaker are narration.
"""

from __future__ import annotations

from typing import Any

from pipeline.readers.assemble import (
    ParsedRecord,
    RawTurn,
    is_narration,
    require_dict,
    require_list,
    require_str,
    unmapped_keys,
)
from pipeline.record.characters import make_character

MAPPED = frozenset({"dialogue"})


def parse_chatharuhi(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a ChatHaruhi dialogue."""
    turns = []
    for i, line in enumerate(require_list(value.get("dialogue"), "dialogue")):
        line = require_dict(line, f"dialogue[{i}]")
        speaker = require_str(line.get("role"), f"dialogue[{i}].role")
        turns.append(
            RawTurn(speaker=speaker, content=require_str(line.get("text"), f"dialogue[{i}].text"))
        )
    last = next((t.speaker.strip() for t in reversed(turns) if not is_narration(t.speaker)), None)
    return ParsedRecord(
        turns=turns,
        character=make_character(last) if last else None,
        character_guessed=True,
        unmapped=unmapped_keys(value, MAPPED),
    )
