"""Character card v3 `.charx` files (a zip with card.json at its root, per the CCv3 spec)
read as cards: a corpus of greetings and examples, or a characters file."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from pipeline.readers import read_source
from pipeline.recipe import load_recipe
from pipeline.record.rejection import QuarantineEntry
from tests.fixtures.corpus import write_jsonl, write_recipe

CHARX = Path(__file__).resolve().parents[3] / "examples" / "formats" / "cards" / "tamsin.charx"


def _read(folder: Path, **source: Any) -> tuple[list[dict[str, Any]], list[QuarantineEntry]]:
    recipe = load_recipe(write_recipe(folder, [{"name": "src", **source}]), check_ops=False)
    good, bad = [], []
    for item in read_source(recipe.sources[0], recipe):
        (bad if isinstance(item, QuarantineEntry) else good).append(item)
    return good, bad


def test_a_charx_corpus_yields_its_greetings_and_example_dialogues(tmp_path: Path) -> None:
    shutil.copy(CHARX, tmp_path)
    good, bad = _read(tmp_path, path="tamsin.charx")
    assert bad == [] and len(good) == 3
    assert {r["character"]["name"] for r in good} == {"Tamsin"}
    assert good[0]["character"]["aliases"] == ["Tam"]
    assert good[0]["source_ref"] == "tamsin.charx:0.0"


def test_a_charx_as_characters_file_gives_the_played_persona(tmp_path: Path) -> None:
    shutil.copy(CHARX, tmp_path)
    turns = [{"role": "user", "content": "Hello?"}, {"role": "Tam", "content": "Come in."}]
    write_jsonl(tmp_path / "d.jsonl", [{"messages": turns, "character": "Tamsin"}])
    good, bad = _read(tmp_path, path="d.jsonl", characters="tamsin.charx")
    assert bad == []
    assert "lighthouse on Gull Rock" in good[0]["character"]["profile"]
    assert good[0]["messages"][1]["role"] == "assistant"


def test_a_charx_without_card_json_or_not_a_zip_is_one_quarantined_entry(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "empty.charx", "w") as z:
        z.writestr("other.json", json.dumps({}))
    (tmp_path / "fake.charx").write_bytes(b"PK\x03\x04 not really a zip")
    for name, words in (("empty.charx", "no card.json"), ("fake.charx", "not a readable CHARX")):
        good, bad = _read(tmp_path, path=name)
        assert good == [] and [e.reason for e in bad] == ["invalid_json"], name
        assert words in bad[0].message
