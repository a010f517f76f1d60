"""The bundled demo corpus through the quality layer: every planted defect is caught, and
the demo's own records (the clean corpus) get no lint finding and no text near-duplicate."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.readers import read_source
from pipeline.recipe import load_recipe
from pipeline.record.rejection import RecordRejected
from pipeline.record.schema import records_to_table
from pipeline.stages.base import BatchContext
from pipeline.stages.quality.planner import plan_near_duplicates
from pipeline.stages.quality.signatures import near_dup_signatures
from pipeline.stages.quality.stages import quality_stages
from pipeline.stages.validate import validate_record

RECIPE = Path(__file__).resolve().parents[4] / "examples" / "quality.yaml"
LINT = {
    "ai_exposure",
    "unresolved_macro",
    "speaker_leak",
    "repetition",
    "slop",
    "language_mismatch",
}


@pytest.fixture(scope="module")
def result():
    recipe = load_recipe(RECIPE, check_ops=False)
    records, invalid = [], []
    for source in recipe.sources:
        for r in read_source(source, recipe):
            if isinstance(r, dict):
                try:
                    validate_record(r, recipe.limits)
                except RecordRejected as exc:
                    invalid.append((exc.reason, r["source_ref"]))
                    continue
                records.append(r)
    table = records_to_table(records)
    config = recipe.quality
    plan = plan_near_duplicates(near_dup_signatures(table, config.near_dup), config.near_dup)
    rejects = []
    for stage in quality_stages(config, plan):
        out = stage.process(table, BatchContext())
        table, rejects = out.table, rejects + out.rejects
    return table, rejects, plan, invalid


def test_each_planted_defect_is_caught(result):
    table, rejects, plan, invalid = result
    # The empty character turn is validation's (no training target): quarantined before
    # the quality stages, beside the demo's one deliberately broken record.
    assert sorted(invalid) == [
        ("empty_turn", "corpus/quality_defects.jsonl:7"),
        ("placeholder_mismatch", "corpus/dialogues.jsonl:33"),
    ]
    assert sorted((r.reason, r.source_ref) for r in rejects) == [
        ("ai_exposure", "corpus/quality_defects.jsonl:5"),
        ("unresolved_macro", "corpus/quality_defects.jsonl:6"),
    ]
    by_ref = dict(zip(table["source_ref"].to_pylist(), table["quality"].to_pylist(), strict=True))
    for line in (1, 2, 3):
        assert "repeated_greeting" in by_ref[f"corpus/quality_defects.jsonl:{line}"]["flags"]
    assert "near_duplicate_image" in by_ref["corpus/quality_defects.jsonl:4"]["flags"]


def test_the_demo_records_get_no_lint_flag_and_no_text_near_duplicate(result):
    table, rejects, plan, _ = result
    clean = [
        (ref, q)
        for ref, q in zip(
            table["source_ref"].to_pylist(), table["quality"].to_pylist(), strict=True
        )
        if "quality_defects" not in ref
    ]
    assert len(clean) >= 50
    assert [(ref, q["flags"]) for ref, q in clean if LINT & set(q["flags"])] == []
    assert not any("quality_defects" not in r.source_ref for r in rejects)
    assert "text" not in plan.pairs["modality"].to_pylist()
    # Every English and Chinese conversation is identified as such.
    assert {q["language"] for _, q in clean} <= {"en", "zh", None}
