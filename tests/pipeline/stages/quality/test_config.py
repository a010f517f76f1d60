"""The recipe's `quality:` section: off unless present, defaults, and errors naming the key."""

from __future__ import annotations

import pytest

from pipeline.recipe import parse_recipe
from pipeline.record.config import RecipeError

BASE = {"name": "q", "sources": [{"name": "s", "path": "d.jsonl"}]}


def test_a_recipe_without_quality_keeps_its_hash_and_quality_on_changes_it():
    without = parse_recipe(BASE, check_ops=False)
    assert without.quality is None and "quality" not in without.data_dict()
    on = parse_recipe({**BASE, "quality": {}}, check_ops=False)
    assert on.quality.ai_exposure.policy == "quarantine"
    assert on.quality.slop.policy == "flag" and on.quality.near_dup.action == "group"
    assert on.recipe_hash != without.recipe_hash
    stricter = parse_recipe({**BASE, "quality": {"near_dup": {"threshold": 0.9}}}, check_ops=False)
    assert stricter.recipe_hash != on.recipe_hash


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"slop": {"policy": "quarantine"}}, "quality.slop.policy"),
        ({"near_dup": {"action": "drop"}}, "quality.near_dup.action"),
        ({"language_mismatch": {"expected": "xx"}}, "quality.language_mismatch"),
        ({"max_tokens_policy": "cut"}, "quality.max_tokens_policy"),
        ({"typo": 1}, "quality.typo"),
    ],
)
def test_a_bad_quality_key_is_named(section, key):
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        parse_recipe({**BASE, "quality": section}, check_ops=False)


def test_language_mismatch_runs_by_default_only_where_the_recipe_declares_a_language():
    from pipeline.stages.quality.config import QualityConfig

    assert QualityConfig().language_mismatch.policy == "off"
    declared = QualityConfig(language_mismatch={"expected": "en"})
    assert declared.language_mismatch.policy == "flag"
    asked = QualityConfig(language_mismatch={"policy": "quarantine"})
    assert asked.language_mismatch.policy == "quarantine"
