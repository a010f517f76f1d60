"""Characters: the persona a record plays, resolved from the record, a characters file, or a default.

A character answers to its name and to every alias (short names, nicknames, the name a
corpus writes in its turns); `CharacterBook` finds an entry by any of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.record.rejection import RecordRejected

CHARACTER_FIELDS = ("name", "profile", "greeting", "catchphrases", "aliases")


def make_character(
    name: str,
    profile: str | None = None,
    greeting: str | None = None,
    catchphrases: Iterable[str] | None = None,
    aliases: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Return a canonical character dict; aliases are deduplicated and never repeat the name."""
    return {
        "name": name,
        "profile": profile,
        "greeting": greeting,
        "catchphrases": list(catchphrases or []),
        "aliases": clean_aliases(name, aliases or ()),
    }


def clean_aliases(name: str, aliases: Iterable[str]) -> list[str]:
    """Return `aliases` stripped, without blanks, repeats (case-insensitive) or the name itself."""
    seen = {name.strip().casefold()}
    out = []
    for alias in aliases:
        alias = alias.strip()
        if alias and alias.casefold() not in seen:
            seen.add(alias.casefold())
            out.append(alias)
    return out


def names_of(character: dict[str, Any] | None) -> list[str]:
    """Return every name the character answers to: its name first, then its aliases."""
    if not character or not character.get("name"):
        return []
    return [character["name"], *(character.get("aliases") or [])]


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
    lists = {}
    for key in ("catchphrases", "aliases"):
        items = value.get(key)
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
            raise RecordRejected("wrong_types", f"character.{key} must be a list of strings")
        lists[key] = items
    return make_character(
        name.strip(),
        value.get("profile"),
        value.get("greeting"),
        lists["catchphrases"],
        lists["aliases"],
    )


@dataclass
class CharacterBook:
    """Characters of one source, by name and alias, from its `characters:` files and `persona:`.

    `persona` is the source's plain-text profile of the played character: it fills the
    profile of a record whose character has none from the record or the book.
    """

    paths: list[str] = field(default_factory=list)
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    persona: str | None = None
    _by_alias: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def add(self, character: dict[str, Any]) -> None:
        """Add one entry; a later entry with the same name replaces the earlier one."""
        self.by_name[character["name"]] = character
        for name in names_of(character):
            self._by_alias[name.casefold()] = character

    def lookup(self, name: str) -> dict[str, Any] | None:
        """Return the entry for `name`: exact name, then any name or alias, case-insensitive."""
        return self.by_name.get(name) or self._by_alias.get(name.strip().casefold())

    def resolve(
        self, character: dict[str, Any] | None, default_name: str | None
    ) -> dict[str, Any] | None:
        """Return the record's character joined with this book (the book fills what is missing).

        The book's entry gives the canonical name; the record's spelling stays as an alias,
        so the turns it names still map to the character. A record that names only a
        character the book lacks is refused when a book is configured: its persona would
        silently be empty.
        """
        if character is None:
            if default_name is None:
                return None
            character = make_character(default_name)
        entry = None
        for name in names_of(character):
            entry = self.lookup(name) if self.by_name else None
            if entry is not None:
                break
        if entry is None:
            if self.paths and not (character["profile"] or character["greeting"] or self.persona):
                raise RecordRejected(
                    "unknown_character",
                    f"character {character['name']!r} is not in the characters file(s) "
                    f"{', '.join(self.paths)}",
                )
            if self.persona and not character["profile"]:
                return {**character, "profile": self.persona}
            return character
        return make_character(
            entry["name"],
            character["profile"] or entry["profile"] or self.persona,
            character["greeting"] or entry["greeting"],
            character["catchphrases"] or entry["catchphrases"],
            [*entry["aliases"], *names_of(character)],
        )


@dataclass(frozen=True)
class BadCharacterLine:
    """One characters-file entry (line, index or card) that could not be used, with its reason."""

    key: str
    reason: str
    message: str


def _kind(value: Any) -> str:
    return type(value).__name__
