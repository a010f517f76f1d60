"""Who is speaking: a character answers to its name and every alias, in readers and in the
text ops' name protection; unmapped fields are counted in the ingest report."""

from __future__ import annotations

from pathlib import Path

from augmenters.protect import protected_terms, protection_pattern, segment_text
from pipeline.execution.ingest import run_ingest
from pipeline.recipe import load_recipe
from pipeline.record.characters import CharacterBook, make_character
from tests.fixtures.corpus import write_jsonl, write_recipe


def test_the_book_finds_an_entry_by_any_alias_and_keeps_the_records_spelling_as_alias() -> None:
    book = CharacterBook(paths=["chars.jsonl"])
    book.add(make_character("Hatsune Miku", profile="A singer.", aliases=["Miku", "ミク"]))
    resolved = book.resolve(make_character("ミク"), None)
    assert resolved["name"] == "Hatsune Miku" and resolved["profile"] == "A singer."
    assert resolved["aliases"] == ["Miku", "ミク"]
    assert book.resolve(None, "miku")["name"] == "Hatsune Miku"


def test_a_persona_fills_the_profile_only_where_record_and_book_have_none() -> None:
    book = CharacterBook(persona="From the persona file.")
    assert book.resolve(make_character("Ada"), None)["profile"] == "From the persona file."
    assert book.resolve(make_character("Ada", profile="Own."), None)["profile"] == "Own."


def test_text_ops_may_not_edit_any_alias_of_the_character() -> None:
    character = make_character(
        "Suzumiya Haruhi", aliases=["Haruhi-chan", "団長", "SOS Brigade Chief"]
    )
    pattern = protection_pattern(protected_terms(character))
    segments = segment_text("Ask Haruhi-chan or the 団長, the SOS Brigade Chief, today.", pattern)
    frozen = {s.text for s in segments if not s.editable}
    assert {"Haruhi-chan", "団長", "SOS Brigade Chief"} <= frozen


def test_the_ingest_report_counts_unmapped_fields_per_source(tmp_path: Path) -> None:
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    write_jsonl(
        tmp_path / "a.jsonl",
        [{"messages": turns, "meta": 1}, {"messages": turns, "meta": 2, "video_ts": 3}],
    )
    write_jsonl(tmp_path / "b.jsonl", [{"messages": turns}])
    recipe = load_recipe(
        write_recipe(
            tmp_path, [{"name": "a", "path": "a.jsonl"}, {"name": "b", "path": "b.jsonl"}]
        ),
        check_ops=False,
    )
    report = run_ingest(recipe, run_id="r1")
    by_name = {s["name"]: s for s in report.to_dict()["sources"]}
    assert by_name["a"]["unmapped_fields"] == {"meta": 2, "video_ts": 1}
    assert by_name["b"]["unmapped_fields"] == {}
