"""Text ops: role targeting, protected spans, non-English pass-through, and what each op draws from."""

from __future__ import annotations

import json
import re

import pytest

from augmenters.stats import OpCounts
from augmenters.wordnet import find_wordnet, load_wordnet
from tests.augmenters.conftest import TINY_WORDS, make_augmenter, make_record
from tests.augmenters.op_table import OPS, OpRow


def changed_turns(record, variant) -> set[int]:
    """Return indices of messages whose content differs (no dialogue ops: turns line up)."""
    return {
        i
        for i, (a, b) in enumerate(zip(record["messages"], variant["messages"], strict=True))
        if a != b
    }


def test_noise_ops_touch_only_user_turns_by_default(record):
    variants, _ = make_augmenter(
        copies=4, text=[{"op": "KeyboardAug"}, {"op": "RandomWordAug", "action": "delete"}]
    ).variants(record)
    assert variants
    touched = set().union(*(changed_turns(record, v) for v in variants))
    assert touched and touched <= {
        i for i, m in enumerate(record["messages"]) if m["role"] == "user"
    }


def test_roles_select_the_turns_an_op_may_touch(record):
    variants, _ = make_augmenter(
        copies=4, text=[{"op": "OcrAug", "roles": ["assistant", "system"]}]
    ).variants(record)
    touched = set().union(*(changed_turns(record, v) for v in variants))
    roles = {record["messages"][i]["role"] for i in touched}
    assert roles == {"assistant", "system"}


FULL_STRENGTH = [r for r in OPS if r.full_strength]


@pytest.mark.parametrize("row", FULL_STRENGTH, ids=[r.id for r in FULL_STRENGTH])
def test_placeholders_character_name_and_catchphrases_are_never_altered(row: OpRow):
    spec = {**row.spec, **row.full_strength, "roles": ["user", "assistant"]}
    record = make_record()
    record["messages"][1]["content"] = (
        "Miku, sing <image>Let's sing together!<audio> now, Hatsune Miku, please sing loudly"
    )
    record["messages"][3]["content"] = "Hatsune Miku?"
    record["messages"][2]["content"] = "Let's sing together! I am Hatsune Miku and this is my song."
    variants, _ = make_augmenter(copies=3, text=[spec]).variants(record)
    assert variants
    protected = re.compile(r"<image>|<audio>|Hatsune Miku|Miku|Let's sing together!")
    for v in variants:
        for before, after in zip(record["messages"], v["messages"], strict=True):
            assert protected.findall(after["content"]) == protected.findall(before["content"])
    assert any(v["messages"][1]["content"] != record["messages"][1]["content"] for v in variants)


def test_text_an_op_cannot_handle_passes_through_and_is_counted():
    record = make_record()
    record["messages"][1]["content"] = "你好，初音未来！这是我的狗 <image> 它很可爱。"
    record["messages"][3]["content"] = "Привет! Послушай <audio> эту песню."
    variants, stats = make_augmenter(
        copies=2, text=[{"op": "KeyboardAug"}, {"op": "SynonymAug"}]
    ).variants(record)
    assert variants == []  # nothing applied: no variant is emitted
    assert stats.text_skipped == 2 * 2 * 2  # 2 copies x 2 ops x 2 user turns
    assert stats.ops["text:KeyboardAug"] == OpCounts(applied=0, skipped=4)
    assert stats.empty_variants == 2


def test_in_mixed_language_turns_only_latin_lines_are_noised():
    record = make_record()
    record["messages"][1]["content"] = (
        "你好，初音未来！这是我的狗 <image>\nIt is a very sleepy and friendly animal."
    )
    variants, _ = make_augmenter(
        copies=2, text=[{"op": "KeyboardAug", "aug_word_p": 1.0}]
    ).variants(record)
    assert variants
    for v in variants:
        first, second = v["messages"][1]["content"].split("\n")
        assert first == "你好，初音未来！这是我的狗 <image>"
        assert second != "It is a very sleepy and friendly animal."


def test_synonym_aug_swaps_words_for_wordnet_synonyms_offline():
    record = make_record()
    record["messages"][1]["content"] = "My car <image> is small."
    variants, _ = make_augmenter(copies=3, text=[{"op": "SynonymAug", "aug_p": 1.0}]).variants(
        record
    )
    wordnet = load_wordnet(str(find_wordnet()))
    allowed = {w.lower() for w in wordnet.synonyms("car") + wordnet.synonyms("small")}
    assert variants
    for v in variants:
        words = re.findall(r"[A-Za-z]+", v["messages"][1]["content"].replace("<image>", ""))
        new = {w.lower() for w in words} - {"my", "car", "is", "small"}
        assert new and all(any(n in a.split() for a in allowed) for n in new)


def test_spelling_aug_reads_its_dictionary(tmp_path):
    table = tmp_path / "spelling.txt"
    table.write_text("dog dgo doog\nhouse hosue\n")
    record = make_record()
    record["messages"][1]["content"] = "The dog <image> in the house."
    variants, _ = make_augmenter(
        copies=2,
        text=[
            {"op": "SpellingAug", "dict_path": str(table), "aug_p": 1.0, "include_reverse": False}
        ],
    ).variants(record)
    for v in variants:
        text = v["messages"][1]["content"]
        assert re.fullmatch(r"The (dgo|doog) <image> in the hosue\.", text), text


def test_contextual_word_embs_substitutes_words_from_the_local_model(tiny_models):
    record = make_record()
    record["messages"][1]["content"] = "Look at the quick brown dog <image> in the house."
    spec = {
        "op": "ContextualWordEmbsAug",
        "model_path": tiny_models["bert"],
        "aug_p": 1.0,
        "top_k": 50,
    }
    variants, _ = make_augmenter(copies=2, text=[spec]).variants(record)
    assert variants
    for v in variants:
        words = re.findall(r"[A-Za-z]+", v["messages"][1]["content"].replace("<image>", ""))
        assert set(w.lower() for w in words) <= set(TINY_WORDS) | {
            "look",
            "at",
            "the",
            "quick",
            "brown",
            "dog",
            "in",
            "house",
        }
        ops = v["augmentation"]["ops"]
        assert json.loads(ops[0]["params"])["turns"][0][1] == v["messages"][1]["content"]


def test_back_translation_round_trips_through_local_models(tiny_models):
    spec = {
        "op": "BackTranslationAug",
        "from_model_name": tiny_models["t5"],
        "to_model_name": tiny_models["t5"],
        "max_length": 6,
    }
    augmenter = make_augmenter(copies=1, text=[spec])
    record = make_record()
    variants, _ = augmenter.variants(record)
    (variant,) = variants
    text = variant["messages"][1]["content"]
    # The placeholder and the name stay where they were; the free text between them is rewritten.
    assert text.count("<image>") == 1 and text.startswith("Hello Miku!") is False
    assert "Miku" in text
    assert augmenter.replay(record, variant["augmentation"]) == variant
