"""Files are judged by their content; a file no reader fits fails its source before any work;
hostile files (deep nesting, broken array elements, FIFOs, devices) cost only themselves."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.readers import SourceReadStats, check_source_paths, detect_format, read_source
from pipeline.readers.detect import detect
from pipeline.recipe import Recipe, load_recipe
from pipeline.record.config import RecipeError
from pipeline.record.rejection import QuarantineEntry
from tests.fixtures.corpus import write_jsonl, write_recipe
from tests.fixtures.roleplay import tavern_card, write_json

TURNS = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def _recipe(folder: Path, **source: Any) -> Recipe:
    return load_recipe(write_recipe(folder, [{"name": "src", **source}]), check_ops=False)


def _read(recipe: Recipe) -> tuple[list[dict[str, Any]], list[QuarantineEntry]]:
    records, rejected = [], []
    for item in read_source(recipe.sources[0], recipe):
        (rejected if isinstance(item, QuarantineEntry) else records).append(item)
    return records, rejected


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        ({"dialogue": [{"role": "A", "text": "x"}], "source": "s"}, "chatharuhi"),
        ({"id": 1, "role": "A", "novel_name": "n", "context": "A：x"}, "charactereval"),
        (
            {"character": "A", "content": [{"turn_role": "character", "turn_content": []}]},
            "characterllm",
        ),
        ({"topic_id": "t", "question": "q", "reply": []}, "characterllm"),
        ({"role": "A", "other_role": "B", "conversations": [], "image": "x.jpg"}, "mmrole"),
        ({"conversations": [], "system_prompt": "s", "image": "x.jpg"}, "sharegpt"),
        (tavern_card("chara_card_v1"), "tavern"),
        (tavern_card("chara_card_v3"), "tavern"),
        ({"bot_name": "A", "conversation": []}, "pippa"),
        ({"messages": TURNS}, "llamafactory"),
        ({"text": "just text"}, None),
    ],
)
def test_each_format_is_detected_from_its_keys(value: dict[str, Any], fmt: str | None) -> None:
    assert detect_format(value) == fmt


def test_a_jsonl_holding_one_pretty_printed_array_counts_its_elements_not_its_lines(
    tmp_path: Path,
) -> None:
    write_json(tmp_path / "data.jsonl", [{"messages": TURNS} for _ in range(12)])
    records, rejected = _read(_recipe(tmp_path, path="data.jsonl"))
    assert (len(records), rejected) == (12, [])
    assert records[0]["source_ref"].endswith("data.jsonl:0")


def test_a_jsonl_holding_an_array_on_one_line_is_read_as_the_array(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text(json.dumps([{"messages": TURNS}] * 3) + "\n")
    records, rejected = _read(_recipe(tmp_path, path="data.jsonl"))
    assert (len(records), rejected) == (3, [])


def test_a_json_file_of_json_lines_and_of_pretty_printed_objects_reads_every_record(
    tmp_path: Path,
) -> None:
    write_jsonl(tmp_path / "lines.json", [{"messages": TURNS}] * 3)
    (tmp_path / "pretty.json").write_text(
        "\n".join(json.dumps({"messages": TURNS}, indent=2) for _ in range(3))
    )
    for name in ("lines.json", "pretty.json"):
        records, rejected = _read(_recipe(tmp_path, path=name))
        assert (len(records), rejected) == (3, []), name


def test_a_source_no_reader_fits_fails_before_any_work_naming_keys_and_formats(
    tmp_path: Path,
) -> None:
    write_jsonl(tmp_path / "odd.jsonl", [{"prompt": "p", "completion": "c"}] * 3)
    recipe = _recipe(tmp_path, path="odd.jsonl")
    with pytest.raises(RecipeError) as exc:
        check_source_paths(recipe)
    message = str(exc.value)
    assert message.startswith("sources.0.path: no reader fits")
    assert "keys seen: completion, prompt" in message
    assert "chatharuhi" in message and "tavern" in message
    assert not (tmp_path / "store").exists()


def test_a_source_whose_lines_are_all_broken_is_quarantined_line_by_line_not_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken.jsonl").write_text("{not json\n{also not\n")
    recipe = _recipe(tmp_path, path="broken.jsonl")
    check_source_paths(recipe)
    records, rejected = _read(recipe)
    assert records == [] and [e.reason for e in rejected] == ["invalid_json", "invalid_json"]


# --- hostile files (issue 14: items 4, 5 and 15) ----------------------------------------------


def test_deep_nesting_on_a_jsonl_line_is_quarantined_and_the_other_lines_kept(
    tmp_path: Path,
) -> None:
    good = json.dumps({"messages": TURNS})
    deep = "[" * 10_000 + "]" * 10_000
    (tmp_path / "d.jsonl").write_text(f"{good}\n{deep}\n{good}\n")
    records, rejected = _read(_recipe(tmp_path, path="d.jsonl"))
    assert len(records) == 2
    assert [(e.reason, e.source_ref.rsplit(":", 1)[1]) for e in rejected] == [
        ("nesting_too_deep", "2")
    ]


@pytest.mark.parametrize("depth", [600, 10_000])
def test_deep_nesting_inside_a_json_array_costs_that_element_only(
    tmp_path: Path, depth: int
) -> None:
    good = json.dumps({"messages": TURNS})
    deep = '{"messages": ' + "[" * depth + "]" * depth + "}"
    (tmp_path / "d.json").write_text(f"[{good}, {deep}, {good}]")
    records, rejected = _read(_recipe(tmp_path, path="d.json"))
    assert len(records) == 2
    assert len(rejected) == 1 and rejected[0].source_ref.endswith("d.json:1")
    assert rejected[0].reason in ("nesting_too_deep", "wrong_types")


def test_a_json_array_with_one_malformed_element_keeps_the_good_elements(
    tmp_path: Path,
) -> None:
    good = json.dumps({"messages": TURNS})
    (tmp_path / "a.json").write_text(f'[{good},\n{{"messages": [oops]}},\n{good},\n{good}]')
    records, rejected = _read(_recipe(tmp_path, path="a.json"))
    assert len(records) == 3
    assert [(e.reason, e.source_ref.rsplit(":", 1)[1]) for e in rejected] == [("invalid_json", "1")]


def test_a_truncated_json_array_keeps_the_elements_before_the_cut(tmp_path: Path) -> None:
    good = json.dumps({"messages": TURNS})
    (tmp_path / "a.json").write_text(f"[{good}, {good}, {good[:20]}")
    records, rejected = _read(_recipe(tmp_path, path="a.json"))
    assert len(records) == 2 and [e.reason for e in rejected] == ["invalid_json"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_source_path_or_inside_a_source_folder_is_refused_before_any_read(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(RecipeError, match=r"sources\.0\.path: .*pipe\.jsonl is not a regular file"):
        check_source_paths(_recipe(tmp_path, path="pipe.jsonl"))
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_jsonl(folder / "ok.jsonl", [{"messages": TURNS}])
    os.mkfifo(folder / "stuck.jsonl")
    with pytest.raises(RecipeError, match="stuck.jsonl is not a regular file"):
        check_source_paths(_recipe(tmp_path, path="corpus"))


def test_a_device_as_source_path_or_characters_file_is_refused(tmp_path: Path) -> None:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with pytest.raises(RecipeError, match="sources.0.path: /dev/zero is not a regular file"):
        check_source_paths(_recipe(tmp_path, path="/dev/zero"))
    write_jsonl(tmp_path / "d.jsonl", [{"messages": TURNS}])
    with pytest.raises(RecipeError, match="sources.0.characters: /dev/zero is not a regular file"):
        check_source_paths(_recipe(tmp_path, path="d.jsonl", characters="/dev/zero"))


# --- detection that never guesses (issue 22 item 2): whole shapes, near misses -------------

BENCH_DIALOGUE = [
    {"turn": 1, "speaker": "user", "utterance": "Hi"},
    {"turn": 1, "speaker": "Li Yue", "utterance": "Hello!", "label": ["speech style"]},
]
ST_HEADER = {"user_name": "You", "character_name": "Seraphina", "create_date": "2026-01-05"}
RISU_CHAT = {
    "message": [{"role": "user", "data": "Hi"}, {"role": "char", "data": "Hello"}],
    "note": "",
    "name": "Chat 1",
    "localLore": [],
}


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        # ChatHaruhi vs a `dialogue` of other turn keys: the key alone no longer decides.
        ({"dialogue": [{"role": "A", "text": "x"}]}, "chatharuhi"),
        ({"character_name": "Li Yue", "dialogue": BENCH_DIALOGUE}, "characterbench"),
        ({"dialogue": BENCH_DIALOGUE, "greeting": "Hello"}, None),
        # LLaMA-Factory files may write ShareGPT's turn keys inside `messages`.
        ({"messages": [{"from": "human", "value": "Hi"}]}, "llamafactory"),
        # OpenAI parts vs LLaMA-Factory's {"type", "value"} parts.
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}, "openai"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "value": "a.png"}]}]},
            "llamafactory",
        ),
        (
            {
                "messages": [{"role": "user", "content": [{"type": "image"}]}],
                "images": ["a.png"],
            },
            "trl",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "image"}]}]}, None),
        # MMRole vs RoleBench `role`.
        ({"role": "Sheldon", "question": "q", "generated": ["a"]}, "rolebench"),
        ({"role": "Sheldon", "conversations": [{"from": "user", "value": "x"}]}, "mmrole"),
        ({"role": "Sheldon", "question": "q"}, None),
        # PIPPA vs ms-swift's `conversation` of {human, assistant}.
        ({"bot_name": "A", "conversation": [{"message": "x", "is_human": True}]}, "pippa"),
        ({"system": "s", "conversation": [{"human": "x", "assistant": "y"}]}, "swift"),
        ({"conversation": [{"message": "x", "is_human": True}]}, None),
        # A SillyTavern chat's header line vs a card.
        (ST_HEADER, "sillytavern"),
        ({"user_name": "You", "character_name": "Seraphina"}, None),
        # A RisuAI chat export vs its other exports (modules, presets) and a card's `data`.
        ({"type": "risuChat", "ver": 2, "data": RISU_CHAT}, "risuai"),
        ({"type": "risuAllChats", "ver": 2, "data": [RISU_CHAT, RISU_CHAT]}, "risuai"),
        ({"type": "risuModule", "data": RISU_CHAT}, None),
        ({"type": "risuChat", "ver": 2, "data": {"messages": TURNS}}, None),
    ],
)
def test_a_format_is_chosen_only_when_its_whole_shape_fits(
    value: dict[str, Any], fmt: str | None
) -> None:
    assert detect_format(value) == fmt


def test_when_two_formats_fit_the_more_specific_wins_and_the_other_is_named() -> None:
    detection = detect({"role": "Mira", "conversations": [{"from": "user", "value": "x"}]})
    assert (detection.format, detection.also_fit) == ("mmrole", ["sharegpt"])
    assert detection.summary() == "mmrole (also fits: sharegpt)"


@pytest.mark.parametrize(
    ("value", "closest", "needs"),
    [
        ({"dialogue": BENCH_DIALOGUE}, "characterbench", "character_name (a string)"),
        ({"role": "Sheldon", "question": "q"}, "rolebench", "generated (a list)"),
        (
            {"character_name": "Li Yue", "dialogue": [{"role": "A", "text": "x"}]},
            "chatharuhi",
            None,
        ),
        (
            {"type": "risuChat", "ver": 2, "data": {"messages": TURNS}},
            "risuai",
            "data (a chat {message: [{role, data}]} (or a list of them))",
        ),
        (
            {"type": "risuModule", "data": RISU_CHAT},
            "risuai",
            "type ('risuChat' or 'risuAllChats')",
        ),
    ],
)
def test_a_near_miss_names_the_closest_formats_with_what_each_needs(
    value: dict[str, Any], closest: str, needs: str | None
) -> None:
    detection = detect(value)
    assert detection.format in (None, closest)
    if detection.format is None:
        names = [fmt for fmt, _ in detection.closest]
        assert closest in names
        assert needs in dict(detection.closest)[closest]


def test_a_benchmark_dialogue_file_is_refused_naming_keys_and_what_the_closest_need(
    tmp_path: Path,
) -> None:
    # The case that used to be read as ChatHaruhi and quarantined whole as wrong_types.
    write_json(tmp_path / "bench.json", [{"dialogue": BENCH_DIALOGUE, "greeting": "Hi"}] * 2)
    with pytest.raises(RecipeError) as exc:
        check_source_paths(_recipe(tmp_path, path="bench.json"))
    message = str(exc.value)
    assert "keys seen: dialogue, greeting" in message
    assert "characterbench needs character_name (a string)" in message
    assert "chatharuhi needs dialogue (a list of {role, text})" in message


def test_every_source_problem_is_reported_in_one_error_before_any_work(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "odd.jsonl", [{"prompt": "p", "completion": "c"}])
    write_jsonl(tmp_path / "good.jsonl", [{"messages": TURNS}])
    path = write_recipe(
        tmp_path,
        [
            {"name": "missing", "path": "nope.jsonl"},
            {"name": "good", "path": "good.jsonl"},
            {"name": "odd", "path": "odd.jsonl"},
        ],
    )
    with pytest.raises(RecipeError) as exc:
        check_source_paths(load_recipe(path, check_ops=False))
    lines = str(exc.value).splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["sources.0.path", "sources.2.path"]
    assert not (tmp_path / "store").exists()


def test_the_read_stats_say_which_format_each_file_was_read_as(tmp_path: Path) -> None:
    write_json(
        tmp_path / "mm.json",
        [{"role": "Mira", "conversations": [{"from": "user", "value": "x"}]}],
    )
    recipe = _recipe(tmp_path, path="mm.json")
    stats = SourceReadStats()
    list(read_source(recipe.sources[0], recipe, stats))
    assert stats.to_dict()["formats"] == {"mm.json": "mmrole (also fits: sharegpt)"}


def test_records_of_other_layouts_in_one_file_are_each_read_by_their_own_shape(
    tmp_path: Path,
) -> None:
    # Concatenated corpora: the file is detected from its first record, a record in another
    # layout is still read by the format its own whole shape fits.
    write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"messages": TURNS},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]},
            {"role": "Mira", "question": "Where to?", "generated": ["North."]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}, TURNS[1]]},
        ],
    )
    records, rejected = _read(_recipe(tmp_path, path="mixed.jsonl"))
    assert rejected == [] and len(records) == 4
    assert records[2]["character"]["name"] == "Mira"


def test_a_character_llm_single_reply_written_as_one_object_is_read(tmp_path: Path) -> None:
    # data/gen_results/interview_single/*_alpaca-7b_result/*.json writes `reply` unwrapped.
    reply = {"role": "Beethoven", "action": "(speaking)", "content": "A great man."}
    write_json(
        tmp_path / "r.json", [{"topic_id": "topic-2", "question": "Your father?", "reply": reply}]
    )
    records, rejected = _read(_recipe(tmp_path, path="r.json"))
    assert rejected == []
    assert [m["content"] for m in records[0]["messages"]] == ["Your father?", "A great man."]


def test_an_unreadable_file_is_its_sources_line_and_the_other_sources_are_still_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.readers import source_fs

    write_jsonl(tmp_path / "locked.jsonl", [{"messages": TURNS}])
    write_jsonl(tmp_path / "odd.jsonl", [{"prompt": "p"}])
    path = write_recipe(
        tmp_path,
        [{"name": "locked", "path": "locked.jsonl"}, {"name": "odd", "path": "odd.jsonl"}],
    )
    real_open = source_fs.SourceFS.open

    def refusing_open(self: Any, location: str) -> Any:
        if location.endswith("locked.jsonl"):
            raise PermissionError(13, "Permission denied", location)
        return real_open(self, location)

    monkeypatch.setattr(source_fs.SourceFS, "open", refusing_open)
    with pytest.raises(RecipeError) as exc:
        check_source_paths(load_recipe(path, check_ops=False))
    first, second = str(exc.value).splitlines()
    assert first.startswith("sources.0.path: cannot read") and "Permission denied" in first
    assert second.startswith("sources.1.path: no reader fits")
