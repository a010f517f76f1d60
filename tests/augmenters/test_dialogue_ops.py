"""Dialogue ops: windows that end on the character, system prompt variants, consistent user renaming."""

from __future__ import annotations

import json

import pytest

from augmenters.stats import OpCounts
from pipeline.recipe import MediaLimits
from pipeline.record.schema import count_placeholders
from pipeline.stages.validate import validate_record
from tests.augmenters.conftest import make_augmenter, make_record
from tests.augmenters.op_table import OPS, OpRow


def long_record():
    record = make_record()
    record["messages"] += [
        {"role": "user", "name": "Bob", "content": "One more question, Miku?"},
        {"role": "assistant", "name": "Hatsune Miku", "content": "Of course, Bob!"},
        {"role": "user", "name": "Bob", "content": "A trailing user turn with no answer."},
    ]
    return record


def test_context_window_keeps_a_suffix_ending_on_a_character_turn_with_its_media():
    record = long_record()
    variants, _ = make_augmenter(
        copies=8, dialogue=[{"op": "ContextWindow", "min_turns": 2}]
    ).variants(record)
    assert variants
    starts = set()
    for v in variants:
        messages = v["messages"]
        assert messages[0] == record["messages"][0]  # the system prompt stays
        assert messages[-1]["role"] == "assistant" and messages[-1]["content"] == "Of course, Bob!"
        assert messages[1]["role"] == "user"
        starts.add(messages[1]["content"])
        assert count_placeholders(messages, "<image>") == len(v["images"])
        assert count_placeholders(messages, "<audio>") == len(v["audios"])
        validate_record(v, MediaLimits())
    assert len(starts) > 1  # the window start is drawn, not fixed
    # A window that starts after the image turn drops the image with it.
    assert any(not v["images"] for v in variants)


def test_system_prompt_variants_replace_insert_or_drop():
    prompts = ["You are {name}. Never break character.", "Play {name}: {profile}"]
    augmenter = make_augmenter(
        copies=6, dialogue=[{"op": "SystemPromptVariants", "prompts": prompts, "drop": 0.3}]
    )
    record = make_record()
    seen = set()
    for v in augmenter.variants(record)[0]:
        system = [m["content"] for m in v["messages"] if m["role"] == "system"]
        seen.add(system[0] if system else None)
        assert v["messages"][1:] == record["messages"][1:] or not system
    assert seen <= {
        "You are Hatsune Miku. Never break character.",
        "Play Hatsune Miku: A cheerful virtual idol.",
        None,
    }
    assert len(seen) >= 2

    no_system = make_record()
    no_system["messages"] = no_system["messages"][1:]
    inserted, _ = make_augmenter(
        copies=2, dialogue=[{"op": "SystemPromptVariants", "prompts": prompts[:1]}]
    ).variants(no_system)
    assert inserted and all(v["messages"][0]["role"] == "system" for v in inserted)


def test_user_name_swap_renames_the_user_everywhere_and_never_the_character():
    record = make_record()
    variants, _ = make_augmenter(
        copies=3, dialogue=[{"op": "UserNameSwap", "names": ["Alice", "Carol"]}]
    ).variants(record)
    assert len(variants) == 3
    for v in variants:
        new = json.loads(v["augmentation"]["ops"][0]["params"])["to"]
        assert new in ("Alice", "Carol")
        text = " ".join(m["content"] for m in v["messages"])
        assert "Bob" not in text and new in text
        assert {m["name"] for m in v["messages"] if m["role"] == "user"} == {new}
        assert {m["name"] for m in v["messages"] if m["role"] == "assistant"} == {"Hatsune Miku"}


def test_user_name_swap_without_a_user_name_is_skipped_and_counted():
    record = make_record()
    for m in record["messages"]:
        m["name"] = None
    variants, stats = make_augmenter(copies=2, dialogue=[{"op": "UserNameSwap"}]).variants(record)
    assert variants == []
    assert stats.ops["dialogue:UserNameSwap"] == OpCounts(applied=0, skipped=2)
    assert stats.empty_variants == 2


DIALOGUE_ROWS = [r for r in OPS if r.modality == "dialogue"]


@pytest.mark.parametrize("row", DIALOGUE_ROWS, ids=[r.id for r in DIALOGUE_ROWS])
def test_every_dialogue_op_of_the_table_leaves_a_valid_record(row: OpRow):
    # Dialogue ops change a conversation's shape: media must still follow their placeholders.
    variants, _ = make_augmenter(copies=6, dialogue=[row.spec]).variants(long_record())
    assert variants
    for v in variants:
        validate_record(v, MediaLimits())
        assert any(m["role"] == "assistant" for m in v["messages"])
