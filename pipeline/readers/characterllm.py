"""Character-LLM (choosewhatulike/trainable-agents) interviews, `data/gen_results/**`.

    interview_turns/*.jsonl:
      {"character": "Ludwig van Beethoven", "topic", "qid", "model", "max_turns", "finished",
       "content": [{"turn_id", "turn_role": "interviewer" | "character",
                    "turn_content": [{"role": "Beethoven", "action": "(speaking)", "content"}]}]}
    interview_single/*.json:
      [{"topic_id", "question", "reply": [{"role", "action", "content"}]}]
      (the *_alpaca-7b/sft/vicuna-7b_result files write `reply` as one object)

The speaker names under `turn_role: character` are aliases of `character` (the turns say
"Beethoven", the record "Ludwig van Beethoven"). `(speaking)` is speech; any other action
(`(thinking)`, a gesture) stays in the text as `*thinking: ...*`, never as speech.
Profiles (`data/seed_data/profiles/wiki_<name>.txt`) are a source's `persona:`.
"""

from __future__ import annotations

from typing import Any

from pipeline.readers.assemble import (
    ParsedRecord,
    RawTurn,
    mark_action,
    optional_str,
    require_dict,
    require_list,
    require_str,
    unmapped_keys,
)
from pipeline.record.characters import make_character
from pipeline.record.rejection import RecordRejected

MAPPED_TURNS = frozenset({"character", "content"})
MAPPED_SINGLE = frozenset({"question", "reply"})
SPEECH_ACTIONS = {"", "speaking", "speak", "says", "say"}


def parse_characterllm(value: dict[str, Any]) -> ParsedRecord:
    """Return the parsed form of a Character-LLM interview (multi-turn or single)."""
    if "question" in value and "reply" in value:
        return _parse_single(value)
    name = require_str(value.get("character"), "character").strip()
    if not name:
        raise RecordRejected("wrong_types", "character is empty")
    turns: list[RawTurn] = []
    character_voices: set[str] = set()
    interviewer_voices: set[str] = set()
    for i, turn in enumerate(require_list(value.get("content"), "content")):
        turn = require_dict(turn, f"content[{i}]")
        side = require_str(turn.get("turn_role"), f"content[{i}].turn_role").strip().casefold()
        voices = character_voices if side == "character" else interviewer_voices
        for j, said in enumerate(
            require_list(turn.get("turn_content"), f"content[{i}].turn_content")
        ):
            utterance = _utterance(said, f"content[{i}].turn_content[{j}]")
            if utterance is None:
                continue
            speaker, text = utterance
            voices.add(speaker)
            _append(turns, speaker, text)
    # A name heard on both sides is the interviewer's, even when it slipped into a
    # character turn (the generator sometimes writes the interviewer's reply there).
    return ParsedRecord(
        turns=turns,
        character=make_character(name),
        voices=sorted(character_voices - interviewer_voices),
        unmapped=unmapped_keys(value, MAPPED_TURNS),
    )


def _parse_single(value: dict[str, Any]) -> ParsedRecord:
    turns = [RawTurn(speaker="user", content=require_str(value.get("question"), "question"))]
    speakers = []
    reply = value.get("reply")
    # The alpaca, sft and vicuna result files write one reply object, not a list of them.
    for j, said in enumerate([reply] if isinstance(reply, dict) else require_list(reply, "reply")):
        utterance = _utterance(said, f"reply[{j}]")
        if utterance is not None:
            speakers.append(utterance[0])
            _append(turns, utterance[0], utterance[1])
    return ParsedRecord(
        turns=turns,
        character=make_character(speakers[0]) if speakers else None,
        character_guessed=True,
        voices=speakers,
        unmapped=unmapped_keys(value, MAPPED_SINGLE),
    )


def _utterance(said: Any, where: str) -> tuple[str, str] | None:
    said = require_dict(said, where)
    speaker = require_str(said.get("role"), f"{where}.role").strip()
    text = (optional_str(said.get("content"), f"{where}.content") or "").strip()
    action = (optional_str(said.get("action"), f"{where}.action") or "").strip().strip("()").strip()
    if action.casefold() not in SPEECH_ACTIONS:
        text = mark_action(f"{action}: {text}" if text else action)
    return (speaker, text) if text else None


def _append(turns: list[RawTurn], speaker: str, text: str) -> None:
    # One speaker's consecutive utterances (speech, then an action) are one turn.
    if turns and turns[-1].speaker == speaker:
        turns[-1].content += "\n" + text
    else:
        turns.append(RawTurn(speaker=speaker, content=text))
