"""Content parts in every spelling trainers write, ms-swift's layouts and LLaVA-style speech
all read into placeholders at the part's place and media in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.readers import read_source
from pipeline.recipe import Recipe, load_recipe
from pipeline.record.rejection import QuarantineEntry
from pipeline.stages.validate import validate_record
from tests.fixtures.corpus import write_bytes, write_jsonl, write_recipe
from tests.fixtures.media import audio_bytes, image_bytes

PNG = image_bytes("PNG")
WAV = audio_bytes("WAV")


def _read(folder: Path, records: list[dict[str, Any]], **source: Any) -> tuple[list, list]:
    write_bytes(folder / "img" / "a.png", PNG)
    write_bytes(folder / "img" / "b.png", image_bytes("PNG", shade=90))
    write_bytes(folder / "clips" / "a.wav", WAV)
    write_jsonl(folder / "d.jsonl", records)
    recipe: Recipe = load_recipe(
        write_recipe(folder, [{"name": "src", "path": "d.jsonl", **source}]), check_ops=False
    )
    good, bad = [], []
    for item in read_source(recipe.sources[0], recipe):
        (bad if isinstance(item, QuarantineEntry) else good).append(item)
    return good, bad


def _user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


REPLY = {"role": "assistant", "content": "A fine picture."}


@pytest.mark.parametrize(
    "record",
    [
        # LLaMA-Factory's newer spelling: every payload in `value`.
        {
            "messages": [
                _user(
                    {"type": "text", "value": "Look:"},
                    {"type": "image_url", "value": "img/a.png"},
                ),
                {"role": "assistant", "content": [{"type": "text", "value": "A fine picture."}]},
            ]
        },
        # OpenAI: the URL nested under image_url.
        {
            "messages": [
                _user(
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "img/a.png"}},
                ),
                REPLY,
            ]
        },
        # Hugging Face / TRL: a bare part, the image in the `images` column.
        {
            "messages": [_user({"type": "text", "text": "Look:"}, {"type": "image"}), REPLY],
            "images": ["img/a.png"],
        },
    ],
    ids=["llamafactory_value_parts", "openai_image_url", "trl_bare_part_and_column"],
)
def test_every_part_spelling_gives_the_same_record(tmp_path: Path, record: dict[str, Any]) -> None:
    good, bad = _read(tmp_path, [record])
    assert bad == []
    assert good[0]["messages"][0]["content"] == "Look:\n<image>"
    assert good[0]["images"] == [{"bytes": PNG, "path": "img/a.png"}]
    validate_record(good[0], load_recipe(tmp_path / "recipe.yaml", check_ops=False).limits)


def test_bare_parts_take_the_column_media_in_order(tmp_path: Path) -> None:
    record = {
        "messages": [
            _user({"type": "image"}, {"type": "text", "text": "vs"}, {"type": "image"}),
            REPLY,
        ],
        "images": ["img/b.png", "img/a.png"],
    }
    good, _ = _read(tmp_path, [record])
    assert [m["path"] for m in good[0]["images"]] == ["img/b.png", "img/a.png"]


def test_openai_input_audio_is_the_record_audio(tmp_path: Path) -> None:
    import base64

    part = {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(WAV).decode(), "format": "wav"},
    }
    good, bad = _read(tmp_path, [{"messages": [_user(part), REPLY]}])
    assert bad == [] and good[0]["audios"][0]["bytes"] == WAV
    assert good[0]["messages"][0]["content"] == "<audio>"


def test_a_video_part_is_refused_as_unsupported_media(tmp_path: Path) -> None:
    record = {"messages": [_user({"type": "video_url", "value": "v.mp4"}), REPLY]}
    good, bad = _read(tmp_path, [record])
    assert good == [] and [e.reason for e in bad] == ["unsupported_media"]


def test_bare_and_payload_parts_of_one_kind_cannot_be_mixed(tmp_path: Path) -> None:
    record = {
        "messages": [
            _user({"type": "image"}, {"type": "image_url", "image_url": {"url": "img/a.png"}}),
            REPLY,
        ],
        "images": ["img/b.png"],
    }
    good, bad = _read(tmp_path, [record], format="trl")
    assert good == [] and [e.reason for e in bad] == ["wrong_types"]


def test_ms_swift_messages_with_images_and_audios_columns(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "system", "content": "You are Mira."},
            {"role": "user", "content": "<image><audio>What do you see and hear?"},
            {"role": "assistant", "content": "Sky and wind."},
        ],
        "images": ["img/a.png"],
        "audios": ["clips/a.wav"],
    }
    good, bad = _read(tmp_path, [record, {**record, "videos": ["v.mp4"]}])
    assert [(len(r["images"]), len(r["audios"])) for r in good] == [(1, 1)]
    assert [e.reason for e in bad] == ["unsupported_media"]


def test_ms_swift_sharegpt_conversation_pairs_become_turns(tmp_path: Path) -> None:
    record = {
        "system": "You are Mira.",
        "conversation": [
            {"human": "Hi", "assistant": "Skies don't wait."},
            {"human": "Where to?", "assistant": "North."},
        ],
    }
    good, bad = _read(tmp_path, [record])
    assert bad == []
    assert [(m["role"], m["content"]) for m in good[0]["messages"]] == [
        ("system", "You are Mira."),
        ("user", "Hi"),
        ("assistant", "Skies don't wait."),
        ("user", "Where to?"),
        ("assistant", "North."),
    ]


def test_a_llava_style_speech_record_reads_its_clip_as_audio(tmp_path: Path) -> None:
    # LLaMA-Omni's InstructS2S layout: the clip in `speech`, marked by <speech>.
    record = {
        "id": "s-1",
        "speech": "clips/a.wav",
        "conversations": [
            {"from": "human", "value": "<speech>\nPlease answer the question in the audio."},
            {"from": "gpt", "value": "It is raining."},
        ],
    }
    good, bad = _read(tmp_path, [record])
    assert bad == []
    assert good[0]["messages"][0]["content"].startswith("<audio>\n")
    assert good[0]["audios"] == [{"bytes": WAV, "path": "clips/a.wav"}]


def test_per_turn_fields_of_part_messages_are_counted_not_dropped(tmp_path: Path) -> None:
    # LLaMA-Factory's v1_sft_demo.jsonl weighs each turn's loss; roleforge does not carry it.
    from pipeline.readers import SourceReadStats

    record = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "value": "hi"}], "loss_weight": 0.0},
            {
                "role": "assistant",
                "content": [{"type": "text", "value": "Hello!"}],
                "loss_weight": 1.0,
            },
        ]
    }
    write_jsonl(tmp_path / "d.jsonl", [record, record])
    recipe = load_recipe(
        write_recipe(tmp_path, [{"name": "s", "path": "d.jsonl"}]), check_ops=False
    )
    stats = SourceReadStats()
    assert sum(1 for _ in read_source(recipe.sources[0], recipe, stats)) == 2
    assert stats.unmapped_fields == {"messages[].loss_weight": 2}
