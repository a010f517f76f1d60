"""The preview's sample shows the corpus: every source and every modality it has."""

from __future__ import annotations

from pathlib import Path

from pipeline.cli.preview import record_stratum, sample_records
from pipeline.recipe import load_recipe
from tests.fixtures.corpus import write_bytes, write_jsonl, write_recipe
from tests.fixtures.media import audio_bytes, image_bytes


def _turns(marker: str = "") -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"{marker}Listen."},
        {"role": "assistant", "content": "I hear it."},
    ]


def test_a_small_sample_of_a_mostly_text_corpus_still_shows_its_audio_and_images(
    tmp_path: Path,
) -> None:
    write_bytes(tmp_path / "bell.wav", audio_bytes("WAV"))
    write_bytes(tmp_path / "cat.png", image_bytes("PNG"))
    text = [{"messages": _turns()} for _ in range(6)]
    audio = [{"messages": _turns("<audio>"), "audios": ["bell.wav"]} for _ in range(3)]
    write_jsonl(tmp_path / "main.jsonl", text + audio)
    write_jsonl(tmp_path / "pics.jsonl", [{"messages": _turns("<image>"), "images": ["cat.png"]}])
    recipe = load_recipe(
        write_recipe(
            tmp_path,
            [{"name": "main", "path": "main.jsonl"}, {"name": "pics", "path": "pics.jsonl"}],
        ),
        check_ops=False,
    )
    picked = sample_records(recipe, 3)
    assert {record_stratum(r) for r in picked} == {
        ("main", "audio"),
        ("main", "text"),
        ("pics", "image"),
    }
    assert [r["id"] for r in sample_records(recipe, 3)] == [r["id"] for r in picked]
    assert len(sample_records(recipe, 6)) == 6
