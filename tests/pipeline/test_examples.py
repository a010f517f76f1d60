"""The shipped example recipes load, and the bundled corpus is complete and consistent."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.recipe import load_recipe
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER, ROLES, count_placeholders

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CORPUS = EXAMPLES / "corpus"
RECIPES = sorted(EXAMPLES.glob("*.yaml"))
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def characters() -> list[dict[str, Any]]:
    return _read_jsonl(CORPUS / "characters.jsonl")


@pytest.fixture(scope="module")
def dialogues() -> list[dict[str, Any]]:
    return _read_jsonl(CORPUS / "dialogues.jsonl")


@pytest.fixture(scope="module")
def pippa() -> list[dict[str, Any]]:
    return _read_jsonl(CORPUS / "pippa.jsonl")


def _media_files(folder: str, suffixes: set[str]) -> list[Path]:
    return sorted(p for p in (CORPUS / folder).iterdir() if p.suffix.lower() in suffixes)


def _referenced(dialogues: list[dict[str, Any]], key: str) -> set[str]:
    return {path for d in dialogues for path in d.get(key, [])}


def test_examples_folder_ships_the_demo_and_text_only_recipes() -> None:
    assert {p.name for p in RECIPES} >= {"demo.yaml", "text_only.yaml"}


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: p.name)
def test_every_example_recipe_loads_and_points_at_bundled_files(recipe_path: Path) -> None:
    recipe = load_recipe(recipe_path)  # also checks every augmentation op and its arguments
    for source in recipe.sources:
        path = Path(recipe.resolve(source.path))
        assert path.is_file() or (path.is_dir() and any(path.rglob("*.json*"))), source.name
        for characters in source.characters_files:
            assert Path(recipe.resolve(characters)).is_file(), source.name
        if source.persona:
            assert Path(recipe.resolve(source.persona)).is_file(), source.name
        if source.media_dir:
            assert Path(recipe.resolve(source.media_dir)).is_dir(), source.name
    # Outputs land in the repo root's git-ignored store, cards in the committed registry.
    assert Path(recipe.store_uri) == REPO / "roleforge-store"
    assert Path(recipe.resolve(recipe.cards_dir)) == REPO / "data_cards"


def test_demo_recipe_covers_every_modality_and_trains() -> None:
    recipe = load_recipe(EXAMPLES / "demo.yaml")
    augment = recipe.augment
    assert recipe.name == "demo-roleplay" and recipe.seed == 1234
    assert augment.copies == 2
    assert augment.text and augment.image and augment.audio and augment.dialogue
    assert recipe.train is not None and recipe.train.model == "scratch-small"


def test_corpus_has_enough_characters_dialogues_and_media(
    characters: list[dict[str, Any]],
    dialogues: list[dict[str, Any]],
    pippa: list[dict[str, Any]],
) -> None:
    images = _media_files("images", IMAGE_SUFFIXES)
    clips = _media_files("audio", AUDIO_SUFFIXES)
    assert len(characters) >= 3
    assert len(dialogues) + len(pippa) >= 30
    assert len(images) >= 10
    assert len(clips) >= 6
    assert len({p.suffix for p in clips}) >= 2
    assert len({p.suffix for p in images}) >= 2


def test_corpus_stays_under_five_megabytes() -> None:
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    assert total < 5_000_000


def test_characters_have_full_personas_and_unique_names(characters: list[dict[str, Any]]) -> None:
    names = [c["name"] for c in characters]
    assert len(set(names)) == len(names)
    for c in characters:
        assert c["profile"] and c["greeting"] and len(c["catchphrases"]) >= 2, c["name"]
    assert any(not c["name"].isascii() for c in characters), "a non-English character is missing"


def test_every_dialogue_is_a_well_formed_multi_turn_conversation(
    characters: list[dict[str, Any]], dialogues: list[dict[str, Any]]
) -> None:
    names = {c["name"] for c in characters}
    for i, d in enumerate(dialogues):
        roles = [m["role"] for m in d["messages"]]
        assert d["character"] in names, i
        assert 3 <= len(roles) <= 8 and set(roles) <= set(ROLES), i
        assert "assistant" in roles and all(m["content"].strip() for m in d["messages"]), i
        assert "system" not in roles[1:], i
        turns = [r for r in roles if r != "system"]
        assert all(a != b for a, b in zip(turns, turns[1:], strict=False)), f"{i}: {roles}"


def test_placeholders_match_media_except_the_one_deliberate_bad_record(
    dialogues: list[dict[str, Any]],
) -> None:
    mismatched = [
        i
        for i, d in enumerate(dialogues)
        if count_placeholders(d["messages"], IMAGE_PLACEHOLDER) != len(d.get("images", []))
        or count_placeholders(d["messages"], AUDIO_PLACEHOLDER) != len(d.get("audios", []))
    ]
    assert mismatched == [len(dialogues) - 1]
    bad = dialogues[-1]
    assert count_placeholders(bad["messages"], IMAGE_PLACEHOLDER) == 2 and len(bad["images"]) == 1


def test_dialogues_mix_image_audio_both_and_text_only(dialogues: list[dict[str, Any]]) -> None:
    with_image = [d for d in dialogues if d.get("images")]
    with_audio = [d for d in dialogues if d.get("audios")]
    both = [d for d in with_image if d.get("audios")]
    text_only = [d for d in dialogues if not d.get("images") and not d.get("audios")]
    assert len(with_image) + len(with_audio) - len(both) > len(dialogues) / 2
    assert len(both) >= 3 and len(text_only) >= 3
    assert sum(any(m["role"] == "system" for m in d["messages"]) for d in dialogues) >= 3


def test_some_image_dialogues_say_left_and_right(dialogues: list[dict[str, Any]]) -> None:
    def says_both(d: dict[str, Any]) -> bool:
        text = " ".join(m["content"].lower() for m in d["messages"])
        return "left" in text and "right" in text

    assert sum(says_both(d) for d in dialogues if d.get("images")) >= 3


def test_catchphrases_occur_in_each_characters_replies(
    characters: list[dict[str, Any]], dialogues: list[dict[str, Any]]
) -> None:
    for c in characters:
        replies = " ".join(
            m["content"]
            for d in dialogues
            if d["character"] == c["name"]
            for m in d["messages"]
            if m["role"] == "assistant"
        ).lower()
        for phrase in c["catchphrases"]:
            assert phrase.lower().rstrip(".!?。！？") in replies, (c["name"], phrase)


def test_pippa_conversations_are_text_only_and_alternate_speakers(
    pippa: list[dict[str, Any]],
) -> None:
    assert len(pippa) >= 6
    for i, conv in enumerate(pippa):
        assert conv["bot_name"] and conv["bot_definitions"] and conv["bot_greeting"], i
        speakers = [turn["is_human"] for turn in conv["conversation"]]
        assert all(isinstance(s, bool) for s in speakers) and True in speakers, i
        assert all(a != b for a, b in zip(speakers, speakers[1:], strict=False)), i
        text = " ".join(turn["message"] for turn in conv["conversation"])
        assert IMAGE_PLACEHOLDER not in text and AUDIO_PLACEHOLDER not in text, i


def test_every_referenced_media_file_exists_and_decodes(dialogues: list[dict[str, Any]]) -> None:
    import soundfile as sf
    from PIL import Image

    for rel in sorted(_referenced(dialogues, "images")):
        with Image.open(CORPUS / rel) as img:
            img.load()
            assert 256 <= min(img.size) and max(img.size) <= 384, rel
    for rel in sorted(_referenced(dialogues, "audios")):
        samples, rate = sf.read(CORPUS / rel)
        assert rate in (16000, 22050) and 1.0 <= len(samples) / rate <= 4.0, rel
    stereo = [
        rel for rel in _referenced(dialogues, "audios") if sf.info(CORPUS / rel).channels == 2
    ]
    assert stereo, "the corpus should carry one stereo clip"


def test_every_media_file_is_referenced_by_some_dialogue(dialogues: list[dict[str, Any]]) -> None:
    on_disk = {f"images/{p.name}" for p in (CORPUS / "images").iterdir()}
    on_disk |= {f"audio/{p.name}" for p in (CORPUS / "audio").iterdir()}
    # The quality demo's defects (quality.yaml) bring a re-saved copy of one image.
    defects = _read_jsonl(CORPUS / "quality_defects.jsonl")
    referenced = _referenced(dialogues + defects, "images") | _referenced(dialogues, "audios")
    assert on_disk == referenced


def test_committed_jsonl_files_match_what_make_corpus_writes() -> None:
    spec = importlib.util.spec_from_file_location("make_corpus", EXAMPLES / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    make_corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_corpus)
    for rel, data in make_corpus.text_files().items():
        assert (CORPUS / rel).read_bytes() == data, (
            f"{rel} was edited by hand; rerun make_corpus.py"
        )


def test_the_formats_recipe_reads_every_bundled_corpus_format_without_a_reject(tmp_path) -> None:
    from pipeline.execution.ingest import run_ingest

    recipe = load_recipe(EXAMPLES / "roleplay_formats.yaml")
    recipe = recipe.model_copy(update={"store": str(tmp_path / "store")})
    report = run_ingest(recipe, run_id="examples")
    assert report.quarantined == 0
    assert {s["name"]: s["valid"] for s in report.sources} == {
        "mmrole": 2,
        "chatharuhi": 2,
        "charactereval": 1,
        "characterllm": 1,
        "llava": 2,
        "card": 4,
        "charx": 3,
        "rolebench": 3,
        "characterbench": 3,
        "sillytavern": 1,
        "agnai": 1,
        "risuai": 1,
        "parts": 3,
        "swift": 2,
        "speech": 1,
    }
    read_as = {fmt for s in report.sources for fmt in s.get("formats", {}).values()}
    assert read_as >= {
        "rolebench",
        "characterbench",
        "sillytavern",
        "agnai",
        "risuai",
        "llamafactory",
        "openai",
        "trl",
        "sharegpt",
    }
    used = {Path(s.path).parts[1] for s in recipe.sources if s.path.startswith("formats/")}
    assert used == {p.name for p in (EXAMPLES / "formats").iterdir() if p.is_dir()}
