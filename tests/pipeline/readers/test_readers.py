"""Readers turn every supported corpus format into canonical records, media bytes loaded."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.readers import detect_format, read_source, referenced_media, source_input_files
from pipeline.recipe import Recipe, load_recipe
from pipeline.record.ids import original_id
from pipeline.record.rejection import QuarantineEntry
from pipeline.record.schema import WORK_SCHEMA, records_to_table
from pipeline.stages.validate import validate_record
from tests.fixtures.corpus import (
    LLAMAFACTORY_MEDIA,
    write_bytes,
    write_jsonl,
    write_llamafactory_corpus,
    write_recipe,
)
from tests.fixtures.media import audio_bytes, data_uri, image_bytes


def _recipe(folder: Path, **source: Any) -> Recipe:
    path = write_recipe(folder, [{"name": "src", **source}])
    return load_recipe(path, check_ops=False)


def _read(recipe: Recipe) -> tuple[list[dict[str, Any]], list[QuarantineEntry]]:
    records, rejected = [], []
    for item in read_source(recipe.sources[0], recipe):
        (rejected if isinstance(item, QuarantineEntry) else records).append(item)
    return records, rejected


def _roles(record: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(m["role"], m["name"]) for m in record["messages"]]


@pytest.fixture(scope="module")
def llamafactory(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recipe, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("lf")
    write_llamafactory_corpus(folder / "corpus")
    recipe = _recipe(folder, path="corpus/mllm_demo.json")
    records, rejected = _read(recipe)
    assert rejected == []
    return recipe, records


def test_llamafactory_corpus_reads_every_record_with_its_media_bytes(llamafactory) -> None:
    recipe, records = llamafactory
    assert len(records) == 4
    kinds = {
        p.rsplit(".", 1)[1] for r in records for m in r["images"] + r["audios"] for p in [m["path"]]
    }
    assert kinds == {"jpg", "mp3", "wav", "flac"}
    for record in records:
        for item in record["images"] + record["audios"]:
            assert item["bytes"] == LLAMAFACTORY_MEDIA[item["path"]]()
        validate_record(record, recipe.limits)  # every medium decodes within the limits


def test_llamafactory_keeps_non_english_text_and_placeholders_exactly(llamafactory) -> None:
    _, records = llamafactory
    source = json.loads(
        Path(__file__)
        .parents[2]
        .joinpath("fixtures/llamafactory/mllm_demo.json")
        .read_text("utf-8")
    )
    for record, original in zip(records, source, strict=True):
        assert [m["content"] for m in record["messages"]] == [
            m["content"] for m in original["messages"]
        ]
    assert records[2]["messages"][0]["content"] == "<image><audio>この写真と音声について教えて。"
    assert [m["path"] for m in records[2]["audios"]] == [
        "mllm_demo_data/2.wav",
        "mllm_demo_data/3.flac",
    ]


def test_records_carry_source_refs_and_ids_stable_across_runs(llamafactory) -> None:
    recipe, records = llamafactory
    assert [r["source_ref"] for r in records] == [f"corpus/mllm_demo.json:{i}" for i in range(4)]
    assert [r["id"] for r in records] == [
        original_id("src", f"mllm_demo.json:{i}") for i in range(4)
    ]
    again, _ = _read(recipe)
    assert [r["id"] for r in again] == [r["id"] for r in records]
    assert all(
        r["split"] is None and r["parent_id"] is None and r["augmentation"] is None for r in records
    )


def test_top_level_character_name_is_the_played_persona(llamafactory) -> None:
    _, records = llamafactory
    assert records[1]["character"] == {
        "name": "Miku",
        "profile": None,
        "greeting": None,
        "catchphrases": [],
        "aliases": [],
    }
    assert _roles(records[1]) == [("system", None), ("user", None), ("assistant", None)]
    assert records[0]["character"] is None


def test_records_convert_to_the_work_schema(llamafactory) -> None:
    _, records = llamafactory
    table = records_to_table(records)
    assert table.schema.equals(WORK_SCHEMA) and table.num_rows == 4


def test_sharegpt_llava_spelling_maps_from_value_and_one_image(tmp_path: Path) -> None:
    write_bytes(tmp_path / "c" / "coco" / "x.jpg", image_bytes("JPEG"))
    write_jsonl(
        tmp_path / "c" / "llava.jsonl",
        [
            {
                "id": "000000033471",
                "image": "coco/x.jpg",
                "conversations": [
                    {"from": "system", "value": "Be brief."},
                    {"from": "human", "value": "<image>\nWhat colour is the bus?"},
                    {"from": "gpt", "value": "White and red."},
                ],
            }
        ],
    )
    records, rejected = _read(_recipe(tmp_path, path="c/llava.jsonl"))
    assert rejected == []
    (record,) = records
    assert _roles(record) == [("system", None), ("user", None), ("assistant", None)]
    assert record["images"] == [{"bytes": image_bytes("JPEG"), "path": "coco/x.jpg"}]
    assert record["source_ref"] == "c/llava.jsonl:1"


def test_openai_parts_become_placeholders_and_media_in_order(tmp_path: Path) -> None:
    write_bytes(tmp_path / "c" / "img" / "local.png", image_bytes("PNG", 8, 1))
    wav = audio_bytes("WAV")
    remote_png = image_bytes("PNG", 8, 2)
    record = {
        "messages": [
            {"role": "system", "content": "You are Rex, a pirate."},
            {
                "role": "user",
                "name": "Ana",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_uri(remote_png, "image/png")}},
                    {"type": "text", "text": "Compare these."},
                    {"type": "image_url", "image_url": {"url": "img/local.png"}},
                    {
                        "type": "input_audio",
                        "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"},
                    },
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Arr, both be maps."}]},
        ]
    }
    write_jsonl(tmp_path / "c" / "chat.jsonl", [record])
    records, rejected = _read(_recipe(tmp_path, path="c/chat.jsonl"))
    assert rejected == []
    (out,) = records
    assert out["messages"][1] == {
        "role": "user",
        "name": "Ana",
        "content": "<image>\nCompare these.\n<image>\n<audio>",
    }
    assert out["messages"][2]["content"] == "Arr, both be maps."
    assert out["images"] == [
        {"bytes": remote_png, "path": None},
        {"bytes": image_bytes("PNG", 8, 1), "path": "img/local.png"},
    ]
    assert out["audios"] == [{"bytes": wav, "path": None}]


def test_pippa_bot_turns_are_the_character_and_bot_fields_its_persona(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "pippa.jsonl",
        [
            {
                "bot_id": "x1",
                "bot_name": "Hu Tao",
                "bot_definitions": "{{char}}: Director of the Wangsheng Funeral Parlor.",
                "bot_greeting": "Ah, a customer!",
                "conversation": [
                    {"message": "Ah, a customer!", "is_human": False},
                    {"message": "Hi, what do you do?", "is_human": True},
                    {"message": "Funerals, of course~", "is_human": False},
                ],
            }
        ],
    )
    records, rejected = _read(_recipe(tmp_path, path="pippa.jsonl"))
    assert rejected == []
    (record,) = records
    assert record["character"] == {
        "name": "Hu Tao",
        "profile": "{{char}}: Director of the Wangsheng Funeral Parlor.",
        "greeting": "Ah, a customer!",
        "catchphrases": [],
        "aliases": [],
    }
    assert _roles(record) == [("assistant", None), ("user", None), ("assistant", None)]


def test_characters_file_fills_persona_by_name_and_source_character_is_the_default(
    tmp_path: Path,
) -> None:
    write_jsonl(
        tmp_path / "chars.jsonl",
        [
            {
                "name": "Aiko",
                "profile": "A shy librarian.",
                "greeting": "Oh! Hello.",
                "catchphrases": ["Shh..."],
            },
            {"name": "Rex", "profile": "A loud pirate.", "greeting": "Ahoy!", "catchphrases": []},
        ],
    )
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"character": "aiko", "messages": turns},
            {"character": {"name": "Rex", "profile": "A quiet pirate."}, "messages": turns},
            {"messages": turns},
        ],
    )
    recipe = _recipe(tmp_path, path="d.jsonl", characters="chars.jsonl", character="Rex")
    records, rejected = _read(recipe)
    assert rejected == []
    aiko, rex, default = (r["character"] for r in records)
    # The book's spelling is the canonical name; the record's spelling only differs in case.
    assert aiko == {
        "name": "Aiko",
        "profile": "A shy librarian.",
        "greeting": "Oh! Hello.",
        "catchphrases": ["Shh..."],
        "aliases": [],
    }
    assert rex["profile"] == "A quiet pirate." and rex["greeting"] == "Ahoy!"  # the record wins
    assert default["name"] == "Rex" and default["profile"] == "A loud pirate."
    assert source_input_files(recipe.sources[0], recipe) == sorted(
        [str(tmp_path / "chars.jsonl"), str(tmp_path / "d.jsonl")]
    )


@pytest.mark.parametrize("ipc", ["file", "stream"])
def test_our_arrow_output_reads_back_with_ids_derived_again(
    tmp_path: Path, llamafactory, ipc: str
) -> None:
    _, originals = llamafactory
    shipped = [{**r, "split": "train", "parent_id": "p", "source": "old"} for r in originals]
    folder = tmp_path / "out"
    folder.mkdir()
    table = records_to_table(shipped)
    new_writer = pa.ipc.new_file if ipc == "file" else pa.ipc.new_stream
    with new_writer(str(folder / "train-0-of-1.arrow"), table.schema) as writer:
        writer.write_table(table, max_chunksize=3)
    records, rejected = _read(_recipe(tmp_path, path="out"))
    assert rejected == []
    for key in ("messages", "images", "audios", "character"):
        assert [r[key] for r in records] == [r[key] for r in originals]
    assert [r["id"] for r in records] == [
        original_id("src", f"train-0-of-1.arrow:{i}") for i in range(4)
    ]
    assert all(
        r["split"] is None and r["parent_id"] is None and r["source"] == "src" for r in records
    )


def test_a_version_folder_reads_only_the_shards_its_manifest_lists(
    tmp_path: Path, llamafactory
) -> None:
    _, originals = llamafactory
    folder = tmp_path / "versions" / "v1"
    folder.mkdir(parents=True)
    for name, rows in (("train-0-of-1.arrow", originals[:3]), ("stray.arrow", originals[3:])):
        table = records_to_table(rows)
        with pa.ipc.new_file(str(folder / name), table.schema) as writer:
            writer.write_table(table)
    manifest = {"version": 1, "shards": [{"path": "train-0-of-1.arrow", "split": "train"}]}
    (tmp_path / "versions" / "v1.json").write_text(json.dumps(manifest))
    records, _ = _read(_recipe(tmp_path, path="versions/v1"))
    assert [r["source_ref"] for r in records] == [
        f"versions/v1/train-0-of-1.arrow:{i}" for i in range(3)
    ]


def test_parquet_rows_with_embedded_media_bytes_read_like_llamafactory(tmp_path: Path) -> None:
    rows = {
        "messages": [
            [{"role": "user", "content": "<image>Hi"}, {"role": "assistant", "content": "Yo"}]
        ],
        "images": [[{"bytes": image_bytes("PNG"), "path": "a.png"}]],
    }
    pq.write_table(pa.table(rows), tmp_path / "train.parquet")
    records, rejected = _read(_recipe(tmp_path, path="train.parquet"))
    assert rejected == []
    assert records[0]["images"] == [{"bytes": image_bytes("PNG"), "path": "a.png"}]
    assert records[0]["source_ref"] == "train.parquet:0"


def test_format_in_the_recipe_overrides_detection(tmp_path: Path) -> None:
    # Read as PIPPA, a messages record has no bot_name: the override is obeyed, not second-guessed.
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    write_jsonl(tmp_path / "d.jsonl", [{"messages": turns}])
    assert len(_read(_recipe(tmp_path, path="d.jsonl"))[0]) == 1
    records, rejected = _read(_recipe(tmp_path, path="d.jsonl", format="pippa"))
    assert records == [] and [e.reason for e in rejected] == ["wrong_types"]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"messages": [{"role": "user", "content": "hi"}], "images": []}, "llamafactory"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, "openai"),
        ({"conversations": [{"from": "human", "value": "hi"}], "image": "a.jpg"}, "sharegpt"),
        ({"role": "Harry", "system": "You are Harry.", "conversations": []}, "mmrole"),
        ({"bot_name": "Hu Tao", "conversation": []}, "pippa"),
        ({"id": "x", "source": "s", "messages": [], "images": [], "audios": []}, "arrow"),
        ({"text": "plain pretraining text"}, None),
    ],
)
def test_format_detection_by_keys(record: dict[str, Any], expected: str | None) -> None:
    assert detect_format(record) == expected


def test_json_array_with_a_bad_byte_loses_only_that_element(tmp_path: Path) -> None:
    good = json.dumps(
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    )
    bad = '{"messages": [{"role": "user", "content": "\xff"}]}'.encode("latin-1")
    (tmp_path / "d.json").write_bytes(
        b"[" + good.encode() + b",\n" + bad + b",\n" + good.encode() + b"]"
    )
    records, rejected = _read(_recipe(tmp_path, path="d.json"))
    assert [r["source_ref"] for r in records] == ["d.json:0", "d.json:2"]
    assert [(e.reason, e.source_ref) for e in rejected] == [("invalid_utf8", "d.json:1")]


def test_symlinked_media_inside_the_root_is_allowed_and_escaping_links_are_refused(
    tmp_path: Path,
) -> None:
    write_bytes(tmp_path / "outside" / "secret.png", image_bytes("PNG"))
    write_bytes(tmp_path / "c" / "media" / "real.png", image_bytes("PNG"))
    (tmp_path / "c" / "media" / "inner.png").symlink_to(tmp_path / "c" / "media" / "real.png")
    (tmp_path / "c" / "media" / "escape.png").symlink_to(tmp_path / "outside" / "secret.png")
    turns = [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "ok"}]
    write_jsonl(
        tmp_path / "c" / "d.jsonl",
        [
            {"messages": turns, "images": ["media/inner.png"]},
            {"messages": turns, "images": ["media/escape.png"]},
        ],
    )
    records, rejected = _read(_recipe(tmp_path, path="c/d.jsonl"))
    assert [r["source_ref"] for r in records] == ["c/d.jsonl:1"]
    assert [(e.reason, e.source_ref) for e in rejected] == [("media_outside_root", "c/d.jsonl:2")]
    records, rejected = _read(_recipe(tmp_path, path="c/d.jsonl", allow_outside_root=True))
    assert len(records) == 2 and rejected == []


def test_a_linked_media_folder_is_followed_inside_the_root_and_refused_outside_it(
    tmp_path: Path,
) -> None:
    # The folder part of a media path is resolved once per folder (MediaRoot caches it):
    # a folder link still decides where the file really is.
    write_bytes(tmp_path / "outside" / "secret.png", image_bytes("PNG"))
    write_bytes(tmp_path / "c" / "media" / "real.png", image_bytes("PNG"))
    (tmp_path / "c" / "linked").symlink_to(tmp_path / "c" / "media")
    (tmp_path / "c" / "away").symlink_to(tmp_path / "outside")
    turns = [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "ok"}]
    write_jsonl(
        tmp_path / "c" / "d.jsonl",
        [
            {"messages": turns, "images": ["linked/real.png"]},
            {"messages": turns, "images": ["away/secret.png"]},
            {"messages": turns, "images": ["linked/../away/secret.png"]},
            {"messages": turns, "images": ["linked/real.png"]},
        ],
    )
    records, rejected = _read(_recipe(tmp_path, path="c/d.jsonl"))
    assert [r["source_ref"] for r in records] == ["c/d.jsonl:1", "c/d.jsonl:4"]
    assert [(e.reason, e.source_ref) for e in rejected] == [
        ("media_outside_root", "c/d.jsonl:2"),
        ("media_outside_root", "c/d.jsonl:3"),
    ]


def test_escaped_surrogates_are_refused_alone_and_read_as_a_pair(tmp_path: Path) -> None:
    # Lines are checked for lone surrogates only when they hold an escape of one; an
    # escaped pair (an emoji as json.dumps writes it) parses to one character and is kept.
    turns = '[{"role": "user", "content": "%s"}, {"role": "assistant", "content": "x"}]'
    lines = [
        '{"messages": %s}' % (turns % "\\ud83d\\ude00"),
        '{"messages": %s}' % (turns % "\\uDC00 low, upper case"),
        '{"messages": %s}' % (turns % "\\u00e9 not a surrogate"),
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, rejected = _read(_recipe(tmp_path, path="d.jsonl"))
    assert [r["messages"][0]["content"] for r in records] == ["\U0001f600", "é not a surrogate"]
    assert [(e.reason, e.source_ref) for e in rejected] == [("invalid_utf8", "d.jsonl:2")]


def test_absolute_media_paths_need_allow_outside_root(tmp_path: Path) -> None:
    image = write_bytes(tmp_path / "elsewhere" / "a.png", image_bytes("PNG"))
    turns = [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "ok"}]
    write_jsonl(tmp_path / "c" / "d.jsonl", [{"messages": turns, "images": [str(image)]}])
    _, rejected = _read(_recipe(tmp_path, path="c/d.jsonl"))
    assert [e.reason for e in rejected] == ["media_outside_root"]
    records, _ = _read(_recipe(tmp_path, path="c/d.jsonl", allow_outside_root=True))
    assert records[0]["images"] == [{"bytes": image_bytes("PNG"), "path": str(image)}]


def test_referenced_media_are_the_files_reading_would_open_and_no_others(tmp_path: Path) -> None:
    write_bytes(tmp_path / "outside" / "secret.png", image_bytes("PNG"))
    write_bytes(tmp_path / "c" / "media" / "a.png", image_bytes("PNG"))
    write_bytes(tmp_path / "c" / "media" / "b.wav", audio_bytes("WAV"))
    turns = [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "ok"}]
    write_jsonl(
        tmp_path / "c" / "d.jsonl",
        [
            {"messages": turns, "images": ["media/a.png"], "audios": ["media/b.wav"]},
            {"messages": turns, "images": ["media/gone.png"]},  # missing: still named
            {"messages": turns, "images": [data_uri(image_bytes("PNG"), "image/png")]},
            {"messages": turns, "images": ["../outside/secret.png"]},  # refused, never read
            {"messages": turns, "images": ["https://example.org/x.png"]},
            "not a record",
        ],
    )
    recipe = _recipe(tmp_path, path="c/d.jsonl")
    media = tmp_path / "c" / "media"
    assert referenced_media(recipe.sources[0], recipe) == sorted(
        str(media / name) for name in ("a.png", "b.wav", "gone.png")
    )
    # The reader loads those that exist.
    records, _ = _read(recipe)
    items = [m for r in records for m in r["images"] + r["audios"]]
    assert {str(tmp_path / "c" / m["path"]) for m in items if m["path"]} == {
        str(media / "a.png"),
        str(media / "b.wav"),
    }


def test_a_folder_source_reads_each_file_with_media_relative_to_that_file(tmp_path: Path) -> None:
    turns = [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "ok"}]
    for part in ("a", "b/deeper"):
        write_bytes(tmp_path / "corpus" / part / "x.png", image_bytes("PNG"))
        write_jsonl(
            tmp_path / "corpus" / part / "d.jsonl", [{"messages": turns, "images": ["x.png"]}]
        )
    records, rejected = _read(_recipe(tmp_path, path="corpus"))
    assert rejected == []
    assert [r["source_ref"] for r in records] == ["corpus/a/d.jsonl:1", "corpus/b/deeper/d.jsonl:1"]
    assert records[1]["id"] == original_id("src", "b/deeper/d.jsonl:1")


def test_a_named_model_turn_for_another_persona_is_a_named_user(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "scene.jsonl",
        [
            {
                "character": "Rex",
                "messages": [
                    {"role": "user", "name": "Ana", "content": "Who's there?"},
                    {"role": "assistant", "name": "Mira", "content": "Only me."},
                    {"role": "assistant", "name": "Rex", "content": "And me, arr."},
                    {"role": "assistant", "content": "Set sail!"},
                ],
            }
        ],
    )
    records, _ = _read(_recipe(tmp_path, path="scene.jsonl"))
    assert _roles(records[0]) == [
        ("user", "Ana"),
        ("user", "Mira"),
        ("assistant", None),
        ("assistant", None),
    ]


def test_an_unforeseen_error_costs_one_record_as_stage_error(tmp_path: Path, monkeypatch) -> None:
    from pipeline import readers

    real = readers.PARSERS["llamafactory"]

    def flaky(value: dict[str, Any]) -> Any:
        if value.get("boom"):
            raise KeyError("surprise")
        return real(value)

    monkeypatch.setitem(readers.PARSERS, "llamafactory", flaky)
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    write_jsonl(
        tmp_path / "d.jsonl",
        [{"messages": turns}, {"messages": turns, "boom": 1}, {"messages": turns}],
    )
    records, rejected = _read(_recipe(tmp_path, path="d.jsonl"))
    assert [r["source_ref"] for r in records] == ["d.jsonl:1", "d.jsonl:3"]
    assert [(e.reason, e.source_ref) for e in rejected] == [("stage_error", "d.jsonl:2")]
    assert "KeyError" in rejected[0].message
