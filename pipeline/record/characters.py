"""Characters: the persona a record plays, resolved from the record, a characters file, or a default."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.record.rejection import RecordRejected

CHARACTER_FIELDS = ("name", "profile", "greeting", "catchphrases")


def make_character(
    name: str,
    profile: str | None = None,
    greeting: str | None = None,
    catchphrases: list[str] | None = None,
) -> dict[str, Any]:
    """Return a canonical character dict."""
    return {
        "name": name,
        "profile": profile,
        "greeting": greeting,
        "catchphrases": list(catchphrases or []),
    }


def character_from_value(value: Any) -> dict[str, Any] | None:
    """Return a canonical character from a record's `character` field (a name or an object)."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise RecordRejected("wrong_types", "character is an empty string")
        return make_character(value.strip())
    if not isinstance(value, dict):
        raise RecordRejected(
            "wrong_types", f"character must be a name or an object, not {_kind(value)}"
        )
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RecordRejected("wrong_types", "character.name must be a non-empty string")
    for key in ("profile", "greeting"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise RecordRejected("wrong_types", f"character.{key} must be a string")
    phrases = value.get("catchphrases")
    if phrases is None:
        phrases = []
    if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
        raise RecordRejected("wrong_types", "character.catchphrases must be a list of strings")
    return make_character(name.strip(), value.get("profile"), value.get("greeting"), phrases)


@dataclass
class CharacterBook:
    """Characters of one source, by name, read from the recipe's `characters:` file."""

    path: str | None = None
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)

    def lookup(self, name: str) -> dict[str, Any] | None:
        """Return the entry for `name` (exact, then case-insensitive), or None."""
        hit = self.by_name.get(name)
        if hit is None:
            folded = name.casefold()
            hit = next((c for n, c in self.by_name.items() if n.casefold() == folded), None)
        return hit

    def resolve(
        self, character: dict[str, Any] | None, default_name: str | None
    ) -> dict[str, Any] | None:
        """Return the record's character joined with this book (the book fills what is missing).

        A record that names only a character the book lacks is refused when a book is
        configured: its persona would silently be empty.
        """
        if character is None:
            if default_name is None:
                return None
            character = make_character(default_name)
        entry = self.lookup(character["name"]) if self.by_name else None
        if entry is None:
            if self.path is not None and not (character["profile"] or character["greeting"]):
                raise RecordRejected(
                    "unknown_character",
                    f"character {character['name']!r} is not in the characters file {self.path}",
                )
            return character
        return make_character(
            character["name"],
            character["profile"] or entry["profile"],
            character["greeting"] or entry["greeting"],
            character["catchphrases"] or entry["catchphrases"],
        )


@dataclass(frozen=True)
class BadCharacterLine:
    """One characters-file line that could not be used, with its reason."""

    line: int
    reason: str
    message: str


def read_character_lines(path: str) -> Iterator[tuple[int, dict[str, Any] | BadCharacterLine]]:
    """Yield (line number, character or BadCharacterLine) for each non-blank line of a jsonl file."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, BadCharacterLine(lineno, "invalid_utf8", str(exc))
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield lineno, BadCharacterLine(lineno, "invalid_json", str(exc))
                continue
            if not isinstance(value, dict):
                yield lineno, BadCharacterLine(lineno, "wrong_types", "a line must be an object")
                continue
            try:
                character = character_from_value(value)
            except RecordRejected as exc:
                yield lineno, BadCharacterLine(lineno, exc.reason, exc.message)
                continue
            yield lineno, character


def _kind(value: Any) -> str:
    return type(value).__name__
