"""The promotion decision: same rows or no comparison, tolerances or significance per metric,
the first model, and the paired bootstrap behind them."""

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
from trainers.config import SignificanceRule, TrainConfig
from trainers.paired import paired_bootstrap


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
    per_sample: list[float] | None = None,
    **per_character: float,
) -> Scored:
    evaluation = {
        "loss": loss,
        "generation": {"ai_exposure_rate": exposure, "catchphrase_hit_rate": 0.5},
        "per_character": {who: {"loss": v} for who, v in per_character.items()},
        "per_sample": {
            f"r{i:02d}": {"character": "Vela", "tokens": 10, "loss": v}
            for i, v in enumerate(per_sample if per_sample is not None else [loss] * 8)
        },
    }
    return Scored(model_id, f"/models/{model_id}", eval_set, protocol, evaluation)


def test_evaluations_on_different_test_splits_are_never_compared() -> None:
    v2 = EvalSet.of(manifest(2, ["t1", "t2"], rows=5))
    with pytest.raises(IncomparableEvaluations, match="different test sets"):
        compare(scored("new", 1.0, eval_set=v2), scored("old", 2.0), {"eval_loss": 0.0})


def test_the_default_rule_is_not_significantly_worse_and_no_more_exposure() -> None:
    rules = TrainConfig().promote_if
    assert rules["eval_loss"] == SignificanceRule(better=False, confidence=0.95)
    assert rules["ai_exposure_rate"] == 0.0
    cfg = TrainConfig(promote_if={"eval_loss": {"better": True, "confidence": 0.9}})
    assert cfg.promote_if["eval_loss"] == SignificanceRule(better=True, confidence=0.9)


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


# Eight test conversations of a baseline, and changes to them: all clearly better, a
# within-noise mix, all clearly worse.
BASE = [3.0, 3.2, 2.8, 3.1, 2.9, 3.3, 2.7, 3.0]
BETTER = [v - 1.0 + 0.05 * (i % 3) for i, v in enumerate(BASE)]
NOISE = [v + d for v, d in zip(BASE, [0.2, -0.25, 0.1, -0.1, 0.15, -0.2, 0.05, 0.0], strict=True)]
WORSE = [v + 0.3 + 0.05 * (i % 2) for i, v in enumerate(BASE)]
NOT_WORSE = {"eval_loss": SignificanceRule(better=False)}
SIGNIFICANTLY_BETTER = {"eval_loss": {"better": True, "confidence": 0.95}}


def with_losses(model_id: str | None, losses: list[float]) -> Scored:
    return scored(model_id, sum(losses) / len(losses), per_sample=losses)


def test_the_bootstrap_interval_is_the_same_for_the_same_comparison() -> None:
    new = {f"r{i}": v for i, v in enumerate(NOISE)}
    old = {f"r{i}": v for i, v in enumerate(BASE)}
    kw = dict(confidence=0.95, lower_is_better=True, seed=7)
    first = paired_bootstrap("eval_loss", new, old, **kw)
    assert first == paired_bootstrap("eval_loss", new, old, **kw)
    assert first.low < first.mean < first.high
    assert paired_bootstrap("eval_loss", new, old, **{**kw, "seed": 8}) != first
    # And through compare: the seed comes from the test rows, so reports reproduce.
    a = compare(with_losses("new", NOISE), with_losses("old", BASE), NOT_WORSE)
    b = compare(with_losses("new", NOISE), with_losses("old", BASE), NOT_WORSE)
    assert a.evidence == b.evidence and a.to_dict() == b.to_dict()


def test_a_significantly_worse_model_is_refused_by_the_default_rule() -> None:
    decision = compare(with_losses("new", WORSE), with_losses("old", BASE), NOT_WORSE)
    assert not decision.promote and decision.case == "significantly worse"
    assert decision.evidence.low > 0
    assert "significantly worse" in decision.reason and "not significantly worse" in decision.reason


def test_a_within_noise_model_passes_not_worse_and_fails_significantly_better() -> None:
    kept = compare(with_losses("new", NOISE), with_losses("old", BASE), NOT_WORSE)
    assert kept.promote and kept.case == "no detectable difference"
    assert kept.evidence.low < 0 < kept.evidence.high
    refused = compare(with_losses("new", NOISE), with_losses("old", BASE), SIGNIFICANTLY_BETTER)
    assert not refused.promote and refused.case == "no detectable difference"
    needed = refused.evidence.conversations_needed()
    assert needed is not None and needed > 8
    assert f"about {needed} test conversations" in refused.reason


def test_a_tolerance_rule_still_decides_on_the_overall_value() -> None:
    # Within noise but above a zero tolerance: the tolerance rule, as configured, refuses.
    decision = compare(with_losses("new", NOISE), with_losses("old", BASE), {"eval_loss": 0.0})
    mean = sum(NOISE) / 8 - sum(BASE) / 8
    assert decision.promote == (mean <= 0)
    assert decision.case == "no detectable difference"  # the evidence is reported either way


def test_the_first_model_must_be_significantly_better_than_the_untrained_base() -> None:
    base = with_losses(None, BASE)
    first = compare(with_losses("new", BETTER), base, NOT_WORSE)
    assert first.promote and first.against == "base" and first.case == "significantly better"
    assert first.evidence.high < 0
    slightly = compare(with_losses("new", NOISE), base, {"eval_loss": 0.5})
    assert not slightly.promote and slightly.against == "base"
    assert "must be significantly better than the untrained base" in slightly.reason


def test_too_few_test_conversations_are_no_evidence() -> None:
    two = compare(with_losses("new", [1.0, 1.1]), with_losses(None, [3.0, 3.1]), NOT_WORSE)
    assert not two.promote and two.case == "no detectable difference"
    assert "fewer than 3 paired conversations" in two.reason


def test_a_significance_rule_without_per_conversation_losses_refuses() -> None:
    new = scored("new", 1.0)
    new.evaluation.pop("per_sample")
    decision = compare(new, scored("old", 2.0), NOT_WORSE)
    assert not decision.promote and "no per-conversation values" in decision.reason


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
        ({"ai_exposure_rate": {"better": True}}, "needs a per-conversation metric"),
        ({"eval_loss": {"better": True, "confidence": 1.5}}, "confidence"),
    ],
)
def test_the_recipe_names_only_known_metrics_with_tolerances(promote_if, message) -> None:
    data = {"name": "ds", "sources": [{"name": "s", "path": "x.jsonl"}]}
    with pytest.raises(RecipeError, match=message):
        parse_recipe({**data, "train": {"promote_if": promote_if}}, check_ops=False)
    with pytest.raises(RecipeError, match="train.init"):
        parse_recipe({**data, "train": {"init": "latest"}}, check_ops=False)
