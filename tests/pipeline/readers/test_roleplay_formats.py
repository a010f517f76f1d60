"""Role-play corpora read as their repositories publish them, with a plain recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.readers import SourceReadStats, read_source
from pipeline.recipe import Recipe, load_recipe
from pipeline.record.rejection import QuarantineEntry, RecordRejected
from pipeline.stages.validate import validate_record
from tests.fixtures.corpus import write_bytes, write_recipe
from tests.fixtures.media import image_bytes
from tests.fixtures.roleplay import (
    card_png,
    tavern_card,
    write_charactereval_corpus,
    write_characterllm_corpus,
    write_chatharuhi_corpus,
    write_json,
    write_llava_corpus,
    write_mmrole_corpus,
)


def _recipe(folder: Path, **source: Any) -> Recipe:
    return load_recipe(write_recipe(folder, [{"name": "src", **source}]), check_ops=False)


def _read(
    recipe: Recipe, validate: bool = True
) -> tuple[list[dict[str, Any]], list[QuarantineEntry], SourceReadStats]:
    stats = SourceReadStats()
    records, rejected = [], []
    for item in read_source(recipe.sources[0], recipe, stats):
        (rejected if isinstance(item, QuarantineEntry) else records).append(item)
    if validate:
        for record in records:
            validate_record(record, recipe.limits)
    return records, rejected, stats


def _turns(record: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(m["role"], m["name"], m["content"]) for m in record["messages"]]


# --- MMRole -------------------------------------------------------------------------------


def test_mmrole_attaches_the_image_to_the_first_user_turn_and_names_the_other_role(
    tmp_path: Path,
) -> None:
    data = write_mmrole_corpus(tmp_path / "MMRole_dataset")
    recipe = _recipe(
        tmp_path, path=str(data.relative_to(tmp_path)), media_dir="MMRole_dataset/images"
    )
    records, rejected, stats = _read(recipe)
    assert rejected == []
    first, second = records
    assert first["character"]["name"] == "Mira Voss"
    assert first["character"]["profile"].startswith("### Introduction\nCaptain Mira Voss")
    roles = [(role, name) for role, name, _ in _turns(first)]
    assert roles == [
        ("system", None),
        ("user", "Jonah Reed"),
        ("assistant", None),
        ("user", "Jonah Reed"),
        ("assistant", None),
    ]
    # The profile stays in the turn MMRole trains on; the image goes before it.
    assert first["messages"][1]["content"].startswith("<image>\nPlease step into the shoes")
    assert [i["path"] for i in first["images"]] == ["COCO/train2017/000000000001.jpg"]
    assert first["images"][0]["bytes"] == image_bytes()
    assert second["messages"][1]["name"] == "a curious human"
    assert stats.unmapped_fields == {"id": 2, "script": 2}


def test_media_dir_is_the_root_media_paths_resolve_against_and_confine_to(
    tmp_path: Path,
) -> None:
    data = write_mmrole_corpus(tmp_path / "MMRole_dataset")
    record = json.loads(data.read_text())[0]
    record["image"] = "../../secret.jpg"
    write_bytes(tmp_path / "secret.jpg", image_bytes())
    write_json(data, [record])
    recipe = _recipe(
        tmp_path, path=str(data.relative_to(tmp_path)), media_dir="MMRole_dataset/images"
    )
    records, rejected, _ = _read(recipe)
    assert records == [] and [e.reason for e in rejected] == ["media_outside_root"]


# --- ChatHaruhi -----------------------------------------------------------------------------


def test_chatharuhi_plays_the_source_character_under_every_alias_with_narration_kept_out(
    tmp_path: Path,
) -> None:
    data = write_chatharuhi_corpus(tmp_path)
    recipe = _recipe(
        tmp_path,
        path=str(data.relative_to(tmp_path)),
        characters="characters.jsonl",
        character="春日",
        persona="characters/haruhi/system_prompt.txt",
    )
    records, rejected, stats = _read(recipe)
    assert rejected == []
    first, second = records
    assert first["character"]["name"] == "凉宫春日"
    assert first["character"]["profile"] == "你正在扮演凉宫春日。保持自信、独立的风格。"
    assert set(first["character"]["aliases"]) == {"春日", "凉宫", "团长"}
    assert _turns(first) == [
        ("user", None, "*「放学后的文艺部活动室」*"),
        ("user", "阿虚", "「今天又要做什么？」"),
        ("assistant", None, "*拍桌* 「当然是寻找外星人！」"),
    ]
    # '''Scene''' and the empty speaker are narration; 凉宫 is an alias of the played character.
    assert _turns(second) == [
        ("user", None, "*「屋顶」*"),
        ("user", "古泉", "「凉宫同学心情不错。」"),
        ("user", None, "*「长门 action」*"),
        ("assistant", None, "「那是当然的。」"),
    ]
    assert stats.unmapped_fields == {"source": 2}


def test_chatharuhi_without_a_character_plays_the_last_speaker(tmp_path: Path) -> None:
    data = write_chatharuhi_corpus(tmp_path)
    records, _, _ = _read(_recipe(tmp_path, path=str(data.relative_to(tmp_path))))
    assert [r["character"]["name"] for r in records] == ["春日", "凉宫"]


# --- CharacterEval ----------------------------------------------------------------------------


def test_charactereval_array_in_a_jsonl_reads_scenes_with_nicknames_and_stage_directions(
    tmp_path: Path,
) -> None:
    data, profiles = write_charactereval_corpus(tmp_path)
    recipe = _recipe(
        tmp_path,
        path=str(data.relative_to(tmp_path)),
        characters=str(profiles.relative_to(tmp_path)),
    )
    records, rejected, stats = _read(recipe)
    assert rejected == []
    assert len(records) == 2  # a pretty-printed array, not one record per line
    first, second = records
    character = first["character"]
    assert character["name"] == "林掌柜"
    assert character["aliases"] == ["林秀", "小林", "林大姐"]
    assert character["catchphrases"] == ["来者都是客。", "账要算清楚。"]
    assert (
        "人物性格：精明，热心" in character["profile"]
        and "人物关系：伙计：阿福" in character["profile"]
    )
    assert _turns(first) == [
        ("assistant", None, "*擦着柜台*客官里边请。"),
        ("user", "阿福", "掌柜的，来了位贵客。"),
        ("assistant", None, "*笑*知道了，上茶。"),
        ("user", None, "*门外下起了雨。*"),
        ("user", "阿福", "好嘞！"),
    ]
    assert _turns(second)[1] == ("assistant", None, "慌什么？*放下算盘*慢慢说。")
    assert stats.unmapped_fields == {"id": 2, "novel_name": 2}


# --- Character-LLM ----------------------------------------------------------------------------


def test_characterllm_maps_the_character_turns_keeps_actions_and_reads_the_profile(
    tmp_path: Path,
) -> None:
    data, profile = write_characterllm_corpus(tmp_path)
    recipe = _recipe(
        tmp_path, path=str(data.relative_to(tmp_path)), persona=str(profile.relative_to(tmp_path))
    )
    records, rejected, stats = _read(recipe)
    assert rejected == []
    (record,) = records
    assert record["character"]["name"] == "Ada Lovelace"
    assert record["character"]["aliases"] == ["Ada"]
    assert record["character"]["profile"].startswith("# Ada Lovelace")
    assert _turns(record) == [
        ("user", "Man", "What is the Engine for?"),
        (
            "assistant",
            None,
            "*smiles*\n*thinking: How far it could go.*\nIt weaves algebra as a loom weaves flowers.",
        ),
    ]
    assert stats.unmapped_fields == {
        "finished": 1,
        "max_turns": 1,
        "model": 1,
        "qid": 1,
        "topic": 1,
    }


# --- lmms-finetune / LLaVA ----------------------------------------------------------------------


def test_llava_style_json_reads_images_from_media_dir_and_system_prompt_as_the_system_turn(
    tmp_path: Path,
) -> None:
    data = write_llava_corpus(tmp_path)
    recipe = _recipe(tmp_path, path=str(data.relative_to(tmp_path)), media_dir="images")
    records, rejected, _ = _read(recipe, validate=False)
    first = records[0]
    validate_record(first, recipe.limits)
    assert _turns(first)[0] == ("system", None, "Answer about the images.")
    assert [i["path"] for i in first["images"]] == ["a.jpg", "b.png"]  # placeholder order
    assert [i["bytes"] for i in first["images"]] == [image_bytes(), image_bytes("PNG", shade=120)]
    # The <video> record is refused at read; the one without a placeholder is left as
    # written, for validation to refuse (media_placement changes that, below).
    assert [e.reason for e in rejected] == ["unsupported_media"]
    assert records[1]["messages"][0]["content"] == "Describe it."
    with pytest.raises(RecordRejected) as exc:
        validate_record(records[1], recipe.limits)
    assert exc.value.reason == "placeholder_mismatch"


def test_media_placement_first_user_turn_places_media_of_records_without_placeholders(
    tmp_path: Path,
) -> None:
    data = write_llava_corpus(tmp_path)
    recipe = _recipe(
        tmp_path,
        path=str(data.relative_to(tmp_path)),
        media_dir="images",
        media_placement="first_user_turn",
    )
    records, _, _ = _read(recipe)
    assert records[0]["messages"][1]["content"] == "<image><image>Which is brighter?"  # as written
    assert records[1]["messages"][0]["content"] == "<image>\nDescribe it."


def test_placeholders_that_exist_but_do_not_match_stay_quarantined(tmp_path: Path) -> None:
    data = write_llava_corpus(tmp_path)
    value = json.loads(data.read_text())[0]
    value["image"] = ["a.jpg"]  # two placeholders, one image
    write_json(data, [value])
    recipe = _recipe(
        tmp_path,
        path=str(data.relative_to(tmp_path)),
        media_dir="images",
        media_placement="first_user_turn",
    )
    (record,) = [r for r in read_source(recipe.sources[0], recipe) if isinstance(r, dict)]
    with pytest.raises(RecordRejected) as exc:
        validate_record(record, recipe.limits)
    assert exc.value.reason == "placeholder_mismatch"


# --- SillyTavern / TavernAI cards -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "keyword"),
    [("chara_card_v1", "chara"), ("chara_card_v2", "chara"), ("chara_card_v3", "ccv3")],
)
def test_a_card_png_as_characters_is_the_persona_with_macros_resolved(
    tmp_path: Path, spec: str, keyword: str
) -> None:
    write_bytes(tmp_path / "bramble.png", card_png(tavern_card(spec), keyword))
    write_json(
        tmp_path / "chat.json",
        [
            {
                "character": "Bramble",
                "messages": [
                    {"role": "user", "content": "Hello?"},
                    {"role": "assistant", "content": "Hush."},
                ],
            }
        ],
    )
    recipe = _recipe(tmp_path, path="chat.json", characters="bramble.png")
    records, rejected, stats = _read(recipe)
    assert rejected == []
    character = records[0]["character"]
    assert character["name"] == "Bramble"
    assert character["greeting"] == "*Bramble lowers her lantern.* You're far from the road, User."
    assert (
        character["profile"].count("Bramble is the warden of the Greenwood who guards User.") == 1
    )
    assert "Personality: gentle, stubborn" in character["profile"]
    assert "{{" not in character["profile"]
    if spec != "chara_card_v1":
        assert character["profile"].startswith("Stay in character as Bramble.")
        assert "Lore:\n- Greenwood: An old forest." in character["profile"]
        assert "Hidden." not in character["profile"]  # a disabled lore entry
        assert character["profile"].endswith("Never speak for User.")
        assert {"creator_notes", "tags", "creator"} <= stats.unmapped_fields.keys()
    assert character["aliases"] == (["Bram"] if spec == "chara_card_v3" else [])


def test_a_card_as_the_source_path_trains_on_its_greetings_and_example_dialogues(
    tmp_path: Path,
) -> None:
    write_json(tmp_path / "bramble.json", tavern_card("chara_card_v2"))
    records, rejected, _ = _read(_recipe(tmp_path, path="bramble.json"))
    assert rejected == []
    assert [_turns(r) for r in records] == [
        [("assistant", None, "*Bramble lowers her lantern.* You're far from the road, User.")],
        [("assistant", None, "Back again, User?")],
        [
            ("user", None, "Who are you?"),
            ("assistant", None, "*smiles* I am Bramble.\nThe trees listen."),
        ],
        [("user", None, "Can I go home?"), ("assistant", None, "At dawn.")],
    ]
    assert len({r["id"] for r in records}) == 4
