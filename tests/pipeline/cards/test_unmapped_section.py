"""The card's Sources section says which corpus fields the dataset does not carry."""

from __future__ import annotations

from types import SimpleNamespace

from pipeline.cards.unmapped import unmapped_fields_section


def _manifest(unmapped: dict[str, dict[str, int]]) -> SimpleNamespace:
    # The section reads only this attribute of the typed Manifest.
    return SimpleNamespace(unmapped_fields=unmapped)


def test_unmapped_fields_are_listed_per_source_and_absent_when_none() -> None:
    text = unmapped_fields_section(_manifest({"mmrole": {"script": 72, "id": 72}, "plain": {}}))
    assert "| mmrole | `id` | 72 |" in text and "| mmrole | `script` | 72 |" in text
    assert "plain" not in text
    assert unmapped_fields_section(_manifest({"plain": {}})) == ""
    assert unmapped_fields_section(_manifest({})) == ""


def test_field_names_cannot_break_the_table() -> None:
    text = unmapped_fields_section(_manifest({"s": {"a|b`c\nd": 1}}))
    assert "| s | `a\\|b'c d` | 1 |" in text
