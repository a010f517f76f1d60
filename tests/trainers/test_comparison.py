"""The promotion decision: same rows or no comparison, tolerances per metric, the first model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.recipe import parse_recipe
from pipeline.record.config import RecipeError
from trainers.comparison import (
    EvalProtocol,
    EvalSet,
    IncomparableEvaluations,
    Scored,
    compare,
)
from trainers.config import TrainConfig


def manifest(version: int, test_shards: list[str], rows: int = 3) -> SimpleNamespace:
    # The attributes of a committed Manifest that identify its test split.
    shards = [SimpleNamespace(path="t.arrow", split="train", rows=9, sha256=f"train{version}")]
    shards += [
        SimpleNamespace(path=f"{h}.arrow", split="test", rows=rows, sha256=h) for h in test_shards
    ]
    return SimpleNamespace(
        name="ds", version=version, number=version, content_id=f"cid{version}", shards=shards
    )


PROTOCOL = EvalProtocol.of(TrainConfig(), ["image"])
V1 = EvalSet.of(manifest(1, ["t1"]))


def scored(
    model_id: str | None,
    loss: float,
    exposure: float | None = 0.0,
    eval_set: EvalSet = V1,
    protocol: EvalProtocol = PROTOCOL,
    **per_character: float,
) -> Scored:
    evaluation = {
        "loss": loss,
        "generation": {"ai_exposure_rate": exposure, "catchphrase_hit_rate": 0.5},
        "per_character": {who: {"loss": v} for who, v in per_character.items()},
    }
    return Scored(model_id, f"/models/{model_id}", eval_set, protocol, evaluation)


def test_evaluations_on_different_test_splits_are_never_compared() -> None:
    v2 = EvalSet.of(manifest(2, ["t1", "t2"], rows=5))
    with pytest.raises(IncomparableEvaluations, match="different test sets"):
        compare(scored("new", 1.0, eval_set=v2), scored("old", 2.0), {"eval_loss": 0.0})


def test_the_same_test_rows_in_another_version_compare() -> None:
    # v2 added only training data: its test shards hash the same, so the numbers compare.
    same_rows = EvalSet.of(manifest(2, ["t1"]))
    assert same_rows.sha256 == V1.sha256 and same_rows.version == 2
    assert compare(scored("new", 1.0, eval_set=same_rows), scored("old", 2.0), {"eval_loss": 0})


def test_evaluations_run_differently_are_never_compared() -> None:
    longer = EvalProtocol.of(TrainConfig(max_length=2048), ["image"])
    with pytest.raises(IncomparableEvaluations, match="run differently"):
        compare(scored("new", 1.0, protocol=longer), scored("old", 2.0), {"eval_loss": 0.0})


def test_a_model_worse_beyond_a_tolerance_is_refused_and_the_metric_named() -> None:
    decision = compare(
        scored("new", 2.0, exposure=0.25),
        scored("old", 2.0, exposure=0.0),
        {"eval_loss": 0.0, "ai_exposure_rate": 0.1},
    )
    assert not decision.promote
    assert "ai_exposure_rate 0.2500 is 0.2500 higher than 0.0000" in decision.reason
    assert [d.passed for d in decision.deltas] == [True, False]


def test_a_model_worse_within_the_tolerance_is_promoted() -> None:
    decision = compare(scored("new", 2.04), scored("old", 2.0), {"eval_loss": 0.05})
    assert decision.promote and decision.against == "promoted"
    assert decision.deltas[0].delta == pytest.approx(0.04)


def test_higher_is_better_metrics_fail_when_they_fall() -> None:
    new = scored("new", 1.0)
    new.evaluation["generation"]["catchphrase_hit_rate"] = 0.25
    decision = compare(new, scored("old", 2.0), {"catchphrase_hit_rate": 0.1})
    assert not decision.promote and "lower than 0.5000" in decision.reason


def test_a_gated_metric_that_was_not_measured_refuses() -> None:
    decision = compare(
        scored("new", 1.0, exposure=None), scored("old", 2.0), {"ai_exposure_rate": 1}
    )
    assert not decision.promote and "not measured" in decision.reason


def test_the_first_model_must_beat_the_untrained_base_on_loss() -> None:
    base = scored(None, 3.0)
    assert compare(scored("new", 2.9), base, {"eval_loss": 0.5}).promote
    tie = compare(scored("new", 3.0), base, {"eval_loss": 0.5})
    assert not tie.promote and tie.against == "base" and "does not beat" in tie.reason


def test_per_character_deltas_cover_characters_of_either_model() -> None:
    decision = compare(
        scored("new", 1.0, Vela=1.0, Hoot=2.0), scored("old", 2.0, Vela=1.5), {"eval_loss": 0}
    )
    assert decision.per_character["Vela"] == {"baseline": 1.5, "new": 1.0, "delta": -0.5}
    assert decision.per_character["Hoot"] == {"baseline": None, "new": 2.0, "delta": None}


@pytest.mark.parametrize(
    "promote_if, message",
    [
        ({"eval_los": 0.0}, "unknown metric eval_los"),
        ({"eval_loss": -0.1}, "tolerances must be >= 0"),
        ({}, "name at least one metric"),
    ],
)
def test_the_recipe_names_only_known_metrics_with_tolerances(promote_if, message) -> None:
    data = {"name": "ds", "sources": [{"name": "s", "path": "x.jsonl"}]}
    with pytest.raises(RecipeError, match=message):
        parse_recipe({**data, "train": {"promote_if": promote_if}}, check_ops=False)
    with pytest.raises(RecipeError, match="train.init"):
        parse_recipe({**data, "train": {"init": "latest"}}, check_ops=False)
