"""Decontamination against held-out files in the layouts test sets ship in."""

from __future__ import annotations

import json

from pipeline.stages.base import BatchContext
from pipeline.stages.quality.config import DecontaminateConfig
from pipeline.stages.quality.decontaminate import DecontaminateStage, HeldOutIndex

from .corpus import clean_chinese, clean_pippa, table

LEAKED = (
    "Forty-one winters. My father kept it before me, and his mother before him. "
    "The lamp does not care who winds it, so long as someone does."
)


def test_a_character_turn_copied_from_a_sharegpt_test_file_is_quarantined_naming_it(tmp_path):
    test_set = tmp_path / "rp_test.jsonl"
    row = {
        "conversations": [{"from": "human", "value": "How long?"}, {"from": "gpt", "value": LEAKED}]
    }
    test_set.write_text(json.dumps(row) + "\n", encoding="utf-8")
    other = tmp_path / "notes.txt"
    other.write_text("Nothing in common with the lighthouse at all, only tea.\n", encoding="utf-8")
    index = HeldOutIndex([str(other), str(test_set)], n=13)
    out = DecontaminateStage(index, DecontaminateConfig()).process(
        table(clean_pippa("leak"), clean_chinese("zh")), BatchContext()
    )
    assert out.table["id"].to_pylist() == ["zh"]
    [reject] = out.rejects
    assert reject.reason == "contaminated" and "rp_test.jsonl" in reject.message


def test_sharing_fewer_words_than_n_is_not_contamination(tmp_path):
    held = tmp_path / "held.txt"
    held.write_text("My father kept it before me, and his mother\n", encoding="utf-8")  # 9 words
    stage = DecontaminateStage(HeldOutIndex([str(held)], n=13), DecontaminateConfig(policy="flag"))
    out = stage.process(table(clean_pippa()), BatchContext())
    assert out.table["quality"].to_pylist()[0]["flags"] == []


def test_chinese_held_out_text_is_matched_by_characters(tmp_path):
    held = tmp_path / "held.json"
    held.write_text(
        json.dumps([{"text": "今年的明前龙井刚到，汤色清亮，香气淡雅"}], ensure_ascii=False),
        encoding="utf-8",
    )
    stage = DecontaminateStage(HeldOutIndex([str(held)], n=13), DecontaminateConfig(policy="flag"))
    out = stage.process(table(clean_chinese()), BatchContext())
    assert out.table["quality"].to_pylist()[0]["flags"] == ["contaminated"]
