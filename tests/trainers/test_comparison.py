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
from trainers.config import REPLY_METRICS, SignificanceRule, TrainConfig
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
    assert decision.case == ("within tolerance" if mean <= 0 else "beyond tolerance")
    assert decision.evidence.case == "no detectable difference"  # reported either way


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
        ({"rouge": 0.0}, "unknown metric rouge"),
        ({"eval_loss": {"better": True, "confidence": 1.5}}, "confidence"),
    ],
)
def test_the_recipe_names_only_known_metrics_with_valid_rules(promote_if, message) -> None:
    data = {"name": "ds", "sources": [{"name": "s", "path": "x.jsonl"}]}
    with pytest.raises(RecipeError, match=message):
        parse_recipe({**data, "train": {"promote_if": promote_if}}, check_ops=False)
    with pytest.raises(RecipeError, match="train.init"):
        parse_recipe({**data, "train": {"init": "latest"}}, check_ops=False)


# ---- the decision's wording: each case begins its reason in its own words ----

WORDING = [
    # (new losses, baseline id, rules, promoted?, case, how the reason begins, and what else)
    (
        BETTER,
        "old",
        NOT_WORSE,
        True,
        "significantly better",
        "significantly better than promoted old: eval_loss -0.9",
        "rule: not significantly worse",
    ),
    (
        NOISE,
        "old",
        NOT_WORSE,
        True,
        "no detectable difference",
        "no detectable difference from promoted old (about ",
        "would show a difference of this size): eval_loss",
    ),
    (
        NOISE,
        "old",
        SIGNIFICANTLY_BETTER,
        False,
        "no detectable difference",
        "no detectable difference from promoted old (about ",
        "the rule asks significantly better (95%)",
    ),
    (
        WORSE,
        "old",
        NOT_WORSE,
        False,
        "significantly worse",
        "significantly worse than promoted old: eval_loss +0.3",
        "the rule asks not significantly worse",
    ),
    (
        [v + 0.04 for v in BASE],
        "old",
        {"eval_loss": 0.05},
        True,
        "within tolerance",
        "within tolerance of promoted old: eval_loss 3.0400 vs 3.0000 (+0.0400, within tolerance 0.05)",
        "; paired, eval_loss +0.0400 per conversation",
    ),
    (
        WORSE,
        "old",
        {"eval_loss": 0.1},
        False,
        "beyond tolerance",
        "worse than promoted old beyond tolerance: eval_loss 3.3250 is 0.3250 higher than 3.0000",
        "over the tolerance 0.1",
    ),
    (
        BETTER,
        None,
        {**NOT_WORSE, "ai_exposure_rate": 0.0},
        True,
        "significantly better",
        "significantly better than the untrained base model: eval_loss -0.9",
        "ai_exposure_rate 0.0000 vs 0.0000 (+0.0000, within tolerance 0.0)",
    ),
    (
        NOISE,
        None,
        NOT_WORSE,
        False,
        "no detectable difference",
        "no detectable difference from the untrained base model (about ",
        "but a first model must be significantly better than the untrained base",
    ),
]


@pytest.mark.parametrize(
    ("losses", "baseline", "rules", "promote", "case", "begins", "says"),
    WORDING,
    ids=[f"{w[4]}-{'promoted' if w[3] else 'refused'}-{w[1] or 'base'}" for w in WORDING],
)
def test_each_case_of_a_decision_has_its_own_wording(
    losses, baseline, rules, promote, case, begins, says
) -> None:
    decision = compare(with_losses("new", losses), with_losses(baseline, BASE), rules)
    assert (decision.promote, decision.case) == (promote, case)
    assert decision.reason.startswith(begins), decision.reason
    assert says in decision.reason
    assert "is not worse than" not in decision.reason and "beats" not in decision.reason


def test_a_refusal_names_every_metric_that_failed_with_its_case() -> None:
    new = with_losses("new", WORSE)
    new.evaluation["generation"]["ai_exposure_rate"] = 0.5
    decision = compare(new, with_losses("old", BASE), {**NOT_WORSE, "ai_exposure_rate": 0.0})
    assert decision.case == "significantly worse"
    lead, other = decision.reason.split("; ", 1)
    assert lead.startswith("significantly worse than promoted old: eval_loss")
    assert other == "ai_exposure_rate 0.5000 is 0.5000 higher than 0.0000, over the tolerance 0.0"


# ---- significance rules on the reply metrics: paired per test conversation ----


def reply(i: int, text: str, reference: str = "the sky is red tonight") -> dict:
    from trainers.metrics import reference_scores

    return {
        "id": f"r{i:02d}",
        "character": "Vela",
        "prompt": "what now?",
        "reference": reference,
        "reply": text,
        "sampled": text,
        "speakers": ["Mira"],
        "catchphrases": ["By the four winds!"] if i % 2 else [],
        **reference_scores(text, [reference]),
    }


IN_CHARACTER = [f"by the four winds, the sky is red tonight {i}" for i in range(8)]
AS_AN_AI = [
    "as an AI I cannot see the sky" if i < 6 else f"the sky is red tonight {i}" for i in range(8)
]


def with_replies(model_id: str | None, texts: list[str], judge: list[int] | None = None) -> Scored:
    from dataclasses import replace

    from trainers.metrics import Reply, mean_reference_scores, reply_metrics

    replies = tuple(reply(i, t) for i, t in enumerate(texts))
    base = scored(model_id, 2.0)
    generation = {
        **reply_metrics([Reply(r["reply"], r["speakers"], r["catchphrases"]) for r in replies]),
        **mean_reference_scores(replies),
    }
    evaluation = {**base.evaluation, "generation": generation}
    if judge is not None:
        scores = {r["id"]: s for r, s in zip(replies, judge, strict=True)}
        evaluation["judge"] = {"mean": sum(judge) / len(judge), "scores": scores}
    return replace(base, evaluation=evaluation, replies=replies)


def test_reply_metrics_have_a_value_per_test_conversation() -> None:
    s = with_replies("m", AS_AN_AI, judge=[1, 2, 3, 4, 5, 1, 2, 3])
    exposure = s.per_conversation("ai_exposure_rate")
    assert list(exposure.values()) == [1.0] * 6 + [0.0] * 2
    assert sum(exposure.values()) / 8 == s.metric("ai_exposure_rate")  # the rate is their mean
    # Catchphrases apply to the odd conversations only (the others' characters have none).
    assert sorted(s.per_conversation("catchphrase_hit_rate")) == ["r01", "r03", "r05", "r07"]
    assert s.per_conversation("rouge_l")["r07"] == pytest.approx(s.replies[7]["rouge_l"])
    assert s.per_conversation("chrf")["r00"] == pytest.approx(s.replies[0]["chrf"])
    assert s.per_conversation("distinct_1")["r00"] == 1.0  # no word repeated in that reply
    assert s.per_conversation("judge_score")["r04"] == 5.0
    assert with_replies("m", []).per_conversation("distinct_2") == {}


@pytest.mark.parametrize("metric", REPLY_METRICS)
def test_the_bootstrap_on_a_reply_metric_is_deterministic(metric) -> None:
    judge_new, judge_old = [4, 5, 3, 4, 5, 4, 3, 5], [2, 3, 3, 2, 4, 2, 3, 3]
    rules = {metric: SignificanceRule(better=False)}
    runs = [
        compare(
            with_replies("new", IN_CHARACTER, judge_new),
            with_replies("old", AS_AN_AI, judge_old),
            rules,
        )
        for _ in range(2)
    ]
    assert runs[0].to_dict() == runs[1].to_dict()
    paired = runs[0].deltas[0].paired
    assert paired is not None and paired.pairs >= 3 and paired.metric == metric


@pytest.mark.parametrize(
    ("metric", "better_texts", "worse_texts"),
    [
        ("ai_exposure_rate", IN_CHARACTER, AS_AN_AI),
        ("chrf", IN_CHARACTER, ["zzz qqq"] * 8),
        ("rouge_l", IN_CHARACTER, ["zzz qqq"] * 8),
    ],
)
def test_a_significantly_worse_reply_metric_refuses_under_a_significance_rule(
    metric, better_texts, worse_texts
) -> None:
    decision = compare(
        with_replies("new", worse_texts),
        with_replies("old", better_texts),
        {metric: {"better": False, "confidence": 0.95}, "eval_loss": 0.0},
    )
    assert not decision.promote and decision.case == "significantly worse"
    assert decision.reason.startswith(f"significantly worse than promoted old: {metric} ")
    assert "8 test conversations" in decision.reason
    # The same change under a loose tolerance passes: tolerance rules still work.
    loose = compare(
        with_replies("new", worse_texts), with_replies("old", better_texts), {metric: 1.0}
    )
    assert loose.promote and loose.case == "within tolerance"


def test_a_significantly_better_reply_metric_passes_a_better_rule() -> None:
    decision = compare(
        with_replies("new", IN_CHARACTER),
        with_replies("old", AS_AN_AI),
        {"ai_exposure_rate": {"better": True}},
    )
    assert decision.promote and decision.case == "significantly better"
    assert decision.reason.startswith("significantly better than promoted old: ai_exposure_rate")


def test_a_significance_rule_on_a_reply_metric_needs_enough_replies_to_pair() -> None:
    data = {"name": "ds", "sources": [{"name": "s", "path": "x.jsonl"}]}
    train = {"eval_prompts": 2, "promote_if": {"eval_loss": 0.0, "chrf": {"better": True}}}
    with pytest.raises(RecipeError, match="promote_if chrf: a significance rule on a reply metric"):
        parse_recipe({**data, "train": train}, check_ops=False)
    # A tolerance on it, or a significance rule with enough replies, is fine.
    parse_recipe({**data, "train": {**train, "promote_if": {"chrf": 0.0}}}, check_ops=False)
    parse_recipe({**data, "train": {**train, "eval_prompts": 3}}, check_ops=False)


def test_judge_score_gates_only_a_recipe_with_a_judge() -> None:
    data = {"name": "ds", "sources": [{"name": "s", "path": "x.jsonl"}]}
    train = {"promote_if": {"judge_score": {"better": False}}}
    with pytest.raises(RecipeError, match="judge_score needs eval.judge"):
        parse_recipe({**data, "train": train}, check_ops=False)
    judge = {"judge": {"base_url": "http://127.0.0.1:1/v1", "model": "j"}}
    parse_recipe({**data, "train": train, "eval": judge}, check_ops=False)
