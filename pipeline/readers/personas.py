"""The characters files of a source, whatever they are written in, as canonical characters.

A `characters:` file may be a jsonl of `{name, profile, greeting, catchphrases, aliases}`,
a JSON array or object of such entries, a CharacterEval profiles map (name -> profile),
a RoleBench desc.json (name -> description text), or a SillyTavern / TavernAI card (JSON, or a PNG with the card in its text chunk).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from pipeline.readers.assemble import unmapped_keys
from pipeline.readers.charactereval import is_profile_map, profile_character
from pipeline.readers.files import iter_raw_items
from pipeline.readers.rolebench import described_characters, is_description_map
from pipeline.readers.source_fs import LOCAL, SourceFS
from pipeline.readers.tavern import card_character, card_unmapped, is_card
from pipeline.record.characters import CHARACTER_FIELDS, BadCharacterLine, character_from_value
from pipeline.record.rejection import RecordRejected

ENTRY_FIELDS = frozenset(CHARACTER_FIELDS)


def read_characters(
    path: str, unmapped: Counter[str], fs: SourceFS = LOCAL
) -> Iterator[dict[str, Any] | BadCharacterLine]:
    """Yield each character a file defines, or a BadCharacterLine for an unusable entry.

    Field names that no character field carries are counted in `unmapped`.
    """
    for item in iter_raw_items(path, fs):
        if item.error is not None:
            yield BadCharacterLine(item.key, item.error.reason, item.error.message)
            continue
        try:
            yield from _characters_of(item.value, unmapped)
        except RecordRejected as exc:
            yield BadCharacterLine(item.key, exc.reason, exc.message)


def _characters_of(value: dict[str, Any], unmapped: Counter[str]) -> Iterator[dict[str, Any]]:
    if is_card(value):
        unmapped.update(card_unmapped(value))
        yield card_character(value)
    elif is_profile_map(value):
        for name, profile in value.items():
            yield profile_character(name, profile)
    elif is_description_map(value):
        yield from described_characters(value)
    else:
        unmapped.update(unmapped_keys(value, ENTRY_FIELDS))
        character = character_from_value(value)
        if character is not None:
            yield character
