"""RoleBench, CharacterBench and SillyTavern chat logs read as their repositories write them
(the bundled examples under examples/formats/ follow those layouts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.readers import SourceReadStats, read_source
from pipeline.recipe import load_recipe
from pipeline.record.rejection import QuarantineEntry
from tests.fixtures.corpus import write_jsonl, write_recipe

FORMATS = Path(__file__).resolve().parents[3] / "examples" / "formats"


def _read(folder: Path, **source: Any) -> tuple[list[dict[str, Any]], list[QuarantineEntry], dict]:
    recipe = load_recipe(write_recipe(folder, [{"name": "src", **source}]), check_ops=False)
    stats = SourceReadStats()
    good, bad = [], []
    for item in read_source(recipe.sources[0], recipe, stats):
        (bad if isinstance(item, QuarantineEntry) else good).append(item)
    return good, bad, stats.to_dict()


def _turns(record: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(m["role"], m["name"], m["content"]) for m in record["messages"]]


# --- RoleBench ---------------------------------------------------------------------------


def test_rolebench_reads_both_instruction_files_with_profiles_from_desc_json(
    tmp_path: Path,
) -> None:
    shutil.copytree(FORMATS / "rolebench", tmp_path / "rolebench")
    good, bad, stats = _read(
        tmp_path,
        path="rolebench/rolebench-eng",
        characters="rolebench/profiles-eng/desc.json",
    )
    assert bad == [] and len(good) == 3
    storm = next(r for r in good if "storm" in r["messages"][0]["content"])
    assert storm["character"]["name"] == "Captain Mira Voss"
    assert storm["character"]["profile"].startswith("Captain Mira Voss commands")
    # The first reply is the target; every other one is kept as a reference for evaluation.
    assert _turns(storm)[1] == (
        "assistant",
        None,
        "Reef the sails, tie down the cargo, and climb above it. Skies don't wait.",
    )
    generated = _generated(tmp_path, storm["messages"][0]["content"])
    assert len(generated) == 3 and storm["references"] == generated[1:]
    assert all(r["references"] is None for r in good if r is not storm)
    assert stats["unmapped_fields"] == {}
    assert set(stats["formats"].values()) == {"rolebench"}


def _generated(folder: Path, question: str) -> list[str]:
    for file in sorted(folder.rglob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            if item["question"] == question:
                return item["generated"]
    raise AssertionError(f"no item asks {question!r}")


def test_rolebench_references_leave_out_blanks_and_repeats_of_the_target(
    tmp_path: Path,
) -> None:
    write_jsonl(
        tmp_path / "train.jsonl",
        [{"role": "Mira", "question": "q", "generated": ["Aye.", " ", "Aye.", "Never.", "Never."]}],
    )
    (record,), _, _ = _read(tmp_path, path="train.jsonl")
    assert record["messages"][-1]["content"] == "Aye." and record["references"] == ["Never."]


def test_a_rolebench_item_without_any_reply_is_quarantined(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"role": "Mira", "question": "q", "generated": []},
            {"role": "Mira", "question": "q", "generated": ["a"]},
        ],
    )
    good, bad, _ = _read(tmp_path, path="train.jsonl", character="Mira")
    assert len(good) == 1 and [(e.reason, e.source_ref) for e in bad] == [
        ("wrong_types", "train.jsonl:1")
    ]


# --- CharacterBench ----------------------------------------------------------------------

Read = tuple[list[dict[str, Any]], list[QuarantineEntry], dict]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Read:
    """The bundled CharacterBench example, read once: 云姨, then 老周 (an ordinary user, a
    profile over top-level keys, a reference_response), then 阿岚 (a related character)."""
    folder = tmp_path_factory.mktemp("characterbench")
    shutil.copy(FORMATS / "characterbench" / "engagement_test.json", folder)
    return _read(folder, path="engagement_test.json")


def test_characterbench_maps_speakers_profile_and_greeting_and_counts_labels(bench: Read) -> None:
    good, bad, stats = bench
    assert bad == [] and len(good) == 3
    record = good[0]
    assert record["character"]["name"] == "云姨"
    assert record["character"]["greeting"] == "来啦？先坐，茶刚泡好。"
    assert record["character"]["profile"].startswith("云姨是茶馆的老板娘")
    assert [role for role, _, _ in _turns(record)] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert {"dialogue[].label", "response_messages", "translation_en"} <= set(
        stats["unmapped_fields"]
    )


def test_characterbench_attributes_of_an_ordinary_users_dialogue_join_the_characters_profile(
    bench: Read,
) -> None:
    # In shape as memory_consistency_test.json's pure_user records (thu-coai/CharacterBench).
    good, _, stats = bench
    zhou = good[1]["character"]
    assert zhou["name"] == "老周"
    assert zhou["profile"].startswith("老周是青石镇渡口的船夫")
    assert "\n中文名：周铁山\n" in zhou["profile"]
    assert "经历：在青石镇渡口撑了三十年船" in zhou["profile"]
    assert zhou["aliases"] == ["周铁山"] and zhou["catchphrases"] == ["船到桥头自然直。"]
    # Carried, so not counted; the user named "None" is nobody in particular.
    assert not {"中文名", "经历", "职业"} & set(stats["unmapped_fields"])
    assert [m["name"] for m in good[1]["messages"] if m["role"] == "user"] == [None, None]


def test_characterbench_reference_response_is_the_reply_to_the_closing_user_turn(
    bench: Read,
) -> None:
    good, _, _ = bench
    assert [role for role, _, _ in _turns(good[1])] == ["user", "assistant"] * 2
    assert _turns(good[1])[-1] == ("assistant", None, "三十年喽，这条河我闭着眼都能走。")
    # Without one, the dialogue still ends on the user's turn, as the benchmark wrote it.
    assert _turns(good[0])[-1][0] == "user"


def test_characterbench_attributes_merged_with_a_related_users_are_counted_not_carried(
    bench: Read,
) -> None:
    # user_type related_character: the flat attributes mix both people's (中文名 names the user).
    good, _, stats = bench
    lan = good[2]["character"]
    assert lan["profile"] == "阿岚是镇上书店的店主，爱读诗，照顾妹妹小满。"
    assert lan["aliases"] == [] and "林小满" not in lan["profile"]
    assert stats["unmapped_fields"]["attributes (merged with the user's)"] == 1
    assert not {"中文名", "同学"} & set(stats["unmapped_fields"])
    assert _turns(good[2])[0] == ("user", "林小满", "姐，我想去看电影。")


def test_a_characterbench_user_name_other_than_user_names_the_user_turns(
    tmp_path: Path,
) -> None:
    record = {
        "character_name": "Li Yue",
        "user_name": "Ada",
        "dialogue": [
            {"turn": 1, "speaker": "user", "utterance": "Hi"},
            {"turn": 1, "speaker": "Li Yue", "utterance": "Hello!"},
        ],
    }
    write_jsonl(tmp_path / "d.jsonl", [record])
    good, _, _ = _read(tmp_path, path="d.jsonl")
    assert _turns(good[0]) == [("user", "Ada", "Hi"), ("assistant", None, "Hello!")]


# --- SillyTavern chat logs -----------------------------------------------------------------

CHAT = "Bramble - 2026-01-05@20h11m.jsonl"


def test_a_sillytavern_chat_is_one_record_joined_with_its_card(tmp_path: Path) -> None:
    shutil.copy(FORMATS / "sillytavern" / CHAT, tmp_path)
    shutil.copy(FORMATS / "cards" / "bramble.png", tmp_path)
    good, bad, stats = _read(tmp_path, path=CHAT, characters="bramble.png")
    assert bad == []
    (record,) = good
    assert record["source_ref"].endswith(f"{CHAT}:1")
    assert record["character"]["name"] == "Bramble" and record["character"]["profile"]
    turns = _turns(record)
    # The hidden OOC comment is left out; the narrator line is narration, not the character.
    assert all("OOC" not in text for _, _, text in turns)
    assert ("user", None, "*A cold wind rattles the hedge.*") in turns
    # The kept swipe is `mes`, not the first alternative.
    assert turns[2] == (
        "assistant",
        None,
        "Acorns for winter. One hundred and twelve, not that I'm counting.",
    )
    assert turns[1][:2] == ("user", "Wren")
    assert {"is_system", "swipes"} <= set(stats["unmapped_fields"])
    assert stats["formats"] == {CHAT: "sillytavern"}


def test_a_broken_line_in_a_chat_log_costs_that_line_only(tmp_path: Path) -> None:
    lines = (FORMATS / "sillytavern" / CHAT).read_text(encoding="utf-8").splitlines()
    lines.insert(3, '{"name": "Wren", "mes": ')
    (tmp_path / "chat.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    good, bad, _ = _read(tmp_path, path="chat.jsonl")
    assert [(e.reason, e.source_ref) for e in bad] == [("invalid_json", "chat.jsonl:4")]
    assert len(good) == 1 and len(good[0]["messages"]) == 6


def test_a_chat_sillytavern_imported_is_read_without_chat_metadata(tmp_path: Path) -> None:
    # SillyTavern's importers (Ooba, Agnai, CAI Tools) write only these three header keys.
    header = {"user_name": "You", "character_name": "Bramble", "create_date": "2026-01-05"}
    message = {"name": "Bramble", "is_user": False, "is_system": False, "mes": "Hi."}
    (tmp_path / "c.jsonl").write_text(json.dumps(header) + "\n" + json.dumps(message) + "\n")
    good, bad, _ = _read(tmp_path, path="c.jsonl")
    assert bad == [] and _turns(good[0]) == [("assistant", None, "Hi.")]


def test_a_characterbench_profile_object_is_read_as_a_structured_profile(tmp_path: Path) -> None:
    # attribute_consistency_bot_test.json writes some profiles as objects, CharacterEval-style.
    record = {
        "character_name": "白展堂",
        "character_profile": {"姓名": "白展堂", "昵称": "老白、盗圣", "性别": "男"},
        "user_name": "用户",
        "dialogue": [
            {"turn": 1, "speaker": "user", "utterance": "老白！"},
            {"turn": 1, "speaker": "白展堂", "utterance": "哎，来了来了。"},
        ],
    }
    write_jsonl(tmp_path / "d.jsonl", [record])
    good, bad, _ = _read(tmp_path, path="d.jsonl")
    assert bad == []
    character = good[0]["character"]
    assert "性别：男" in character["profile"] and {"老白", "盗圣"} <= set(character["aliases"])
    assert _turns(good[0])[1][0] == "assistant"


def test_a_group_chat_without_header_plays_the_sources_character(tmp_path: Path) -> None:
    # SillyTavern saves group chats as message lines only; the group file names the members.
    lines = [
        {"name": "Wren", "is_user": True, "is_system": False, "mes": "Both of you, come here."},
        {"name": "Bramble", "is_user": False, "is_system": False, "mes": "Coming."},
        {"name": "Tamsin", "is_user": False, "is_system": False, "mes": "In a moment."},
    ]
    write_jsonl(tmp_path / "group.jsonl", lines)
    good, bad, stats = _read(tmp_path, path="group.jsonl", character="Bramble")
    assert bad == [] and stats["formats"] == {"group.jsonl": "sillytavern"}
    assert _turns(good[0]) == [
        ("user", "Wren", "Both of you, come here."),
        ("assistant", None, "Coming."),
        ("user", "Tamsin", "In a moment."),
    ]
    # Without `character:` nobody is known to be played: refused with the reason, not guessed.
    _, bad, _ = _read(tmp_path, path="group.jsonl")
    assert [e.reason for e in bad] == ["unknown_role"]


# --- Agnaistic chat exports ----------------------------------------------------------------


def test_an_agnai_export_plays_the_imported_character_and_leaves_ooc_out(tmp_path: Path) -> None:
    shutil.copy(FORMATS / "agnai" / "chat-c3d4.json", tmp_path)
    good, bad, stats = _read(tmp_path, path="chat-c3d4.json")
    assert bad == [] and stats["formats"] == {"chat-c3d4.json": "agnai"}
    (record,) = good
    assert record["character"]["name"] == "Tamsin"
    assert record["character"]["profile"] == "A stormy night at the Gull Rock lighthouse."
    assert [(role, name) for role, name, _ in _turns(record)] == [
        ("assistant", None),
        ("user", "Wren"),
        ("assistant", None),
    ]
    assert all("OOC" not in text for _, _, text in _turns(record))
    assert {"ooc", "sampleChat", "messages[].createdAt"} <= set(stats["unmapped_fields"])


# --- RisuAI chat exports -------------------------------------------------------------------

RISU = "Tamsin_2026-01-05T201102000Z_chat.json"


def _risu_chat(*messages: dict[str, Any]) -> dict[str, Any]:
    # A Chat as src/ts/storage/database.svelte.ts declares it (kwaroran/RisuAI).
    return {"message": list(messages), "note": "", "name": "Chat 1", "localLore": [], "fmIndex": -1}


def _say(role: str, data: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "data": data, "chatId": f"{role}-{len(data)}", "time": 1, **extra}


def test_a_risuai_chat_export_is_one_record_played_by_the_sources_character(
    tmp_path: Path,
) -> None:
    shutil.copy(FORMATS / "risuai" / RISU, tmp_path)
    shutil.copy(FORMATS / "cards" / "tamsin.charx", tmp_path)
    good, bad, stats = _read(tmp_path, path=RISU, character="Tamsin", characters="tamsin.charx")
    assert bad == []
    (record,) = good
    assert record["character"]["name"] == "Tamsin" and record["character"]["profile"]
    assert [role for role, _, _ in _turns(record)] == ["user", "assistant"] * 2
    # The disabled branch comment was never sent to the model: left out, counted.
    assert all("specialcomment" not in text for _, _, text in _turns(record))
    assert {"disabled", "chat.note", "message[].generationInfo"} <= set(stats["unmapped_fields"])
    assert stats["formats"] == {RISU: "risuai"}


def test_a_risuai_all_chats_export_is_a_record_per_chat_as_the_app_would_send_it(
    tmp_path: Path,
) -> None:
    cut = _risu_chat(
        _say("user", "An old opening"),
        _say("char", "An old reply", saying="c1"),
        _say("user", "Start again", disabled="allBefore"),
        _say("user", "Hello, keeper.", name="Wren"),
        _say("char", "Evening.", saying="c1"),
    )
    errored = _risu_chat(
        _say("user", "Any ships?"),
        _say("char", "Two tonight.\n```risuerror\n429 Too Many Requests\n```", saying="c1"),
        _say("user", "And now?"),
        _say("char", "```risuerror\ntimeout\n```", saying="c1"),
    )
    export = tmp_path / "all.json"
    export.write_text(
        json.dumps({"type": "risuAllChats", "ver": 2, "data": [cut, errored], "folders": []}),
        encoding="utf-8",
    )
    good, bad, stats = _read(tmp_path, path="all.json", character="Tamsin")
    assert bad == [] and [r["source_ref"] for r in good] == ["all.json:1.0", "all.json:1.1"]
    # "allBefore" cuts that message and everything before it; a shared session names users.
    assert _turns(good[0]) == [("user", "Wren", "Hello, keeper."), ("assistant", None, "Evening.")]
    # The app's error blocks are not the character's words: cut, and an empty reply dropped.
    assert _turns(good[1]) == [
        ("user", None, "Any ships?"),
        ("assistant", None, "Two tonight."),
        ("user", None, "And now?"),
    ]
    assert {"disabled", "risuerror"} <= set(stats["unmapped_fields"])


def test_a_risuai_group_chat_or_inlaid_image_is_refused_with_its_reason(tmp_path: Path) -> None:
    group = _risu_chat(
        _say("user", "Hi all"), _say("char", "Hi", saying="c1"), _say("char", "Yo", saying="c2")
    )
    inlay = _risu_chat(_say("user", "Look {{inlay::9f2c}}"), _say("char", "Nice", saying="c1"))
    for name, chat in (("group.json", group), ("inlay.json", inlay)):
        (tmp_path / name).write_text(
            json.dumps({"type": "risuChat", "ver": 2, "data": chat}), encoding="utf-8"
        )
    for name, reason, says in (
        ("group.json", "unknown_role", "group chat"),
        ("inlay.json", "missing_media", "{{inlay::9f2c}}"),
    ):
        good, bad, _ = _read(tmp_path, path=name, character="Tamsin")
        assert good == [] and [e.reason for e in bad] == [reason] and says in bad[0].message
