"""Comparing two models' evaluations, and the promotion decision that follows.

Two numbers are compared only when they were computed on the same rows the same way: the
same test split (the sha256 of its shards) and the same evaluation protocol (max length,
chat template, prompts, generation length, media kept). `compare` refuses anything else
with IncomparableEvaluations; the retrain job re-evaluates the baseline instead.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pipeline.store.manifest import Manifest
from trainers.config import LOWER_IS_BETTER, MIN_PAIRS, SignificanceRule, TrainConfig
from trainers.metrics import REFERENCE_SCORES, Reply, reply_values
from trainers.paired import PairedDifference, paired_bootstrap

# The confidence of the first model's "significantly better than the untrained base" test
# when promote_if gives eval_loss a tolerance rather than a significance rule.
FIRST_MODEL_CONFIDENCE = 0.95


class IncomparableEvaluations(ValueError):
    """The two evaluations were computed on different rows or in different ways."""


@dataclass(frozen=True)
class EvalSet:
    """The held-out rows a number was computed on: one split of one committed version."""

    dataset: str
    version: int
    content_id: str
    split: str
    rows: int
    # The split's identity: over its (id, row digest) pairs (`trainers.heldout.held_out_set`),
    # or, by `of`, over its shard files' hashes (format-1 versions, which keep no row digests).
    sha256: str

    @classmethod
    def of(cls, manifest: Manifest, split: str = "test") -> EvalSet:
        """Return the eval set of `split` identified by its shard files' hashes."""
        shards = sorted(s.sha256 for s in manifest.shards if s.split == split)
        return cls(
            dataset=manifest.name,
            version=manifest.number,
            content_id=manifest.content_id,
            split=split,
            rows=sum(s.rows for s in manifest.shards if s.split == split),
            sha256=hashlib.sha256(json.dumps(shards).encode()).hexdigest(),
        )

    def label(self) -> str:
        return f"{self.dataset}@v{self.version} {self.split} ({self.rows} rows, {self.sha256[:12]})"


@dataclass(frozen=True)
class EvalProtocol:
    """How an evaluation ran; two evaluations compare only under the same protocol."""

    max_length: int
    system_template: str
    keep_media: tuple[str, ...]
    eval_prompts: int
    max_new_tokens: int

    @classmethod
    def of(cls, cfg: TrainConfig, keep_media: list[str] | tuple[str, ...]) -> EvalProtocol:
        return cls(
            cfg.max_length,
            cfg.system_template,
            tuple(sorted(keep_media)),
            cfg.eval_prompts,
            cfg.max_new_tokens,
        )

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Scored:
    """One model's evaluation on one EvalSet under one protocol."""

    model_id: str | None  # None: the untrained base model
    path: str
    eval_set: EvalSet
    protocol: EvalProtocol
    evaluation: dict[str, Any]  # eval.json without the replies
    reevaluated: bool = False  # computed now for this comparison, not taken from training
    replies: tuple[dict[str, Any], ...] = ()  # its generated replies, for the report

    def metric(self, name: str) -> float | None:
        """Return a promote_if metric: eval_loss/perplexity overall, or a reply rate."""
        if name == "eval_loss":
            return self.evaluation.get("loss")
        if name == "perplexity":
            return self.evaluation.get("perplexity")
        if name == "judge_score":
            return (self.evaluation.get("judge") or {}).get("mean")
        return (self.evaluation.get("generation") or {}).get(name)

    def per_conversation(self, name: str) -> dict[str, float]:
        """Return a promote_if metric per test conversation (record id -> value); {} if absent.

        eval_loss and perplexity come from each conversation's own loss; the reply metrics
        from its greedy reply (trainers.metrics.reply_values: 1/0 for the rates, the reply's
        own distinct-n, its ROUGE-L and chrF); judge_score from the judge's score of it.
        Conversations where a metric does not apply (no catchphrases, no n-gram) are left out.
        """
        if name in ("eval_loss", "perplexity"):
            per_sample = self.evaluation.get("per_sample") or {}
            losses = {rid: row["loss"] for rid, row in per_sample.items()}
            if name == "perplexity":
                return {rid: math.exp(min(loss, 50.0)) for rid, loss in losses.items()}
            return losses
        if name == "judge_score":
            scores = (self.evaluation.get("judge") or {}).get("scores") or {}
            return {rid: float(score) for rid, score in scores.items()}
        out = {}
        for r in self.replies:
            if name in REFERENCE_SCORES:
                value = r.get(name)
            else:
                value = reply_values(Reply(r["reply"], r["speakers"], r["catchphrases"]))[name]
            if value is not None:
                out[r["id"]] = float(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "path": self.path,
            "eval_set": asdict(self.eval_set),
            "protocol": asdict(self.protocol),
            "reevaluated": self.reevaluated,
            "eval": self.evaluation,
        }


# What one gated metric shows: a paired case (trainers.paired) under a significance rule;
# under a tolerance, whether the change stays within it.
MetricCase = Literal[
    "significantly better",
    "no detectable difference",
    "significantly worse",
    "within tolerance",
    "beyond tolerance",
    "not measured",
]


@dataclass(frozen=True)
class MetricDelta:
    """One gated metric: both values, the change, the rule and whether it passes."""

    metric: str
    new: float | None
    baseline: float | None
    tolerance: float | None  # None: a significance rule decides (see `paired`)
    lower_is_better: bool
    passed: bool
    paired: PairedDifference | None = None
    better: bool = False  # the significance rule asks for significantly better
    confidence: float | None = None  # the significance rule's level

    @property
    def delta(self) -> float | None:
        if self.new is None or self.baseline is None:
            return None
        return self.new - self.baseline

    @property
    def rule(self) -> str:
        """Return the rule in words, e.g. "tolerance 0.0" or "not significantly worse (95%)"."""
        if self.tolerance is not None:
            return f"tolerance {self.tolerance}"
        want = "significantly better" if self.better else "not significantly worse"
        return f"{want} ({self.confidence or FIRST_MODEL_CONFIDENCE:.0%})"

    @property
    def case(self) -> MetricCase:
        """Return what this metric shows under its rule (see MetricCase)."""
        if self.tolerance is None:
            if self.paired is None or self.paired.pairs == 0:
                return "not measured"
            return self.paired.case
        if self.delta is None:
            return "not measured"
        return "within tolerance" if self.passed else "beyond tolerance"

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "delta": self.delta, "rule": self.rule, "case": self.case}
        out["paired"] = self.paired.to_dict() if self.paired else None
        return out


@dataclass(frozen=True)
class Decision:
    """Whether the new model is promoted, and why, with every delta behind it.

    `case` is the case that decided (MetricCase): of the first metric that failed its rule,
    of eval_loss's interval when a first model is not significantly better than the base,
    else of the leading gated metric (eval_loss when gated); the reason begins with it.
    `evidence` is the paired eval_loss interval, reported whatever the rules (None when
    either model has no per-conversation losses)."""

    promote: bool
    reason: str
    case: MetricCase
    against: str  # "promoted" or "base"
    eval_set: EvalSet
    deltas: tuple[MetricDelta, ...]
    per_character: dict[str, dict[str, float | None]] = field(default_factory=dict)
    evidence: PairedDifference | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "case": self.case,
            "against": self.against,
            "eval_set": asdict(self.eval_set),
            "evidence": self.evidence.to_dict() if self.evidence else None,
            "deltas": [d.to_dict() for d in self.deltas],
            "per_character": self.per_character,
        }


def _check_comparable(new: Scored, baseline: Scored) -> None:
    if new.eval_set.sha256 != baseline.eval_set.sha256 or new.eval_set.split != (
        baseline.eval_set.split
    ):
        raise IncomparableEvaluations(
            f"refusing to compare evaluations on different test sets: "
            f"{new.eval_set.label()} vs {baseline.eval_set.label()}; re-evaluate the baseline"
        )
    judges = [(s.evaluation.get("judge") or {}).get("identity") for s in (new, baseline)]
    if all(judges) and judges[0] != judges[1]:
        raise IncomparableEvaluations(
            f"refusing to compare LLM-judge scores of different judges or rubrics: "
            f"{judges[0]} vs {judges[1]}; judge both models with one judge"
        )
    if new.protocol != baseline.protocol:
        raise IncomparableEvaluations(
            f"refusing to compare evaluations run differently: {asdict(new.protocol)} vs "
            f"{asdict(baseline.protocol)}; re-evaluate the baseline"
        )


def _per_character(new: Scored, baseline: Scored) -> dict[str, dict[str, float | None]]:
    """Return per character: both test losses and the change (new - baseline)."""
    a = baseline.evaluation.get("per_character") or {}
    b = new.evaluation.get("per_character") or {}
    out = {}
    for who in sorted(set(a) | set(b)):
        before = (a.get(who) or {}).get("loss")
        after = (b.get(who) or {}).get("loss")
        delta = after - before if before is not None and after is not None else None
        out[who] = {"baseline": before, "new": after, "delta": delta}
    return out


def bootstrap_seed(eval_set: EvalSet) -> int:
    """Return the bootstrap seed of comparisons on `eval_set`: fixed by its rows, so the same
    comparison always reports the same interval."""
    return int(eval_set.sha256[:8], 16)


def paired_difference(
    new: Scored, baseline: Scored, metric: str, confidence: float
) -> PairedDifference | None:
    """Return the paired bootstrap of `metric` over the conversations both models scored
    (None when either has no per-conversation values)."""
    a, b = baseline.per_conversation(metric), new.per_conversation(metric)
    if not a or not b:
        return None
    return paired_bootstrap(
        metric,
        b,
        a,
        confidence=confidence,
        lower_is_better=metric in LOWER_IS_BETTER,
        seed=bootstrap_seed(new.eval_set),
    )


def _judge(
    metric: str, rule: float | SignificanceRule, new: Scored, baseline: Scored
) -> MetricDelta:
    lower = metric in LOWER_IS_BETTER
    a, b = baseline.metric(metric), new.metric(metric)
    if isinstance(rule, SignificanceRule):
        paired = paired_difference(new, baseline, metric, rule.confidence)
        if paired is None or paired.pairs == 0:
            passed = False
        elif rule.better:
            passed = paired.case == "significantly better"
        else:
            passed = paired.case != "significantly worse"
        return MetricDelta(metric, b, a, None, lower, passed, paired, rule.better, rule.confidence)
    if a is None or b is None:
        passed = False
    elif lower:
        passed = b <= a + rule
    else:
        passed = b >= a - rule
    return MetricDelta(metric, b, a, float(rule), lower, passed)


def compare(
    new: Scored, baseline: Scored, rules: dict[str, float | SignificanceRule | dict]
) -> Decision:
    """Return the promotion decision of `new` against `baseline` on the same EvalSet.

    Each gated metric passes its rule: a tolerance (not worse by more than it) or a
    significance rule (the paired bootstrap interval of per-conversation differences).
    Against the untrained base model (a dataset's first model), eval_loss must also be
    significantly better, so the first promotion means the training did something.
    Raises IncomparableEvaluations when the two were not evaluated on the same rows the same way.
    """
    _check_comparable(new, baseline)
    rules = {
        m: SignificanceRule.model_validate(r) if isinstance(r, dict) else r
        for m, r in rules.items()
    }
    against = "base" if baseline.model_id is None else "promoted"
    deltas = [_judge(metric, rule, new, baseline) for metric, rule in rules.items()]
    loss_rule = rules.get("eval_loss")
    confidence = (
        loss_rule.confidence if isinstance(loss_rule, SignificanceRule) else FIRST_MODEL_CONFIDENCE
    )
    evidence = paired_difference(new, baseline, "eval_loss", confidence)
    who = "the untrained base model" if against == "base" else f"promoted {baseline.model_id}"
    failed = [d for d in deltas if not d.passed]
    first_not_better = against == "base" and (
        evidence is None or evidence.case != "significantly better"
    )
    if failed:
        case, reason = failed[0].case, _reason(failed, who, refused=True)
    elif first_not_better:
        case = evidence.case if evidence else "not measured"
        what = evidence.interval() if evidence else "no per-conversation test losses to pair"
        reason = (
            f"{_headline(case, who, evidence)}, but a first model must be significantly better "
            f"than the untrained base: {what}"
        )
    else:
        lead = sorted(deltas, key=lambda d: d.metric != "eval_loss")
        case = "significantly better" if against == "base" else lead[0].case
        reason = _reason(lead, who, refused=False, case=case, evidence=evidence)
    return Decision(
        promote=not failed and not first_not_better,
        reason=reason,
        case=case,
        against=against,
        eval_set=new.eval_set,
        deltas=tuple(deltas),
        per_character=_per_character(new, baseline),
        evidence=evidence,
    )


def _headline(case: MetricCase, who: str, paired: PairedDifference | None = None) -> str:
    """Return how a reason begins for `case`, e.g. "significantly better than promoted X"."""
    if case == "no detectable difference":
        needed = paired.conversations_needed() if paired else None
        if paired and paired.pairs < MIN_PAIRS:
            size = f" (fewer than {MIN_PAIRS} paired conversations are no evidence)"
        elif needed is not None:
            size = f" (about {needed} test conversations would show a difference of this size)"
        else:
            size = ""
        return f"no detectable difference from {who}{size}"
    return {
        "significantly better": f"significantly better than {who}",
        "significantly worse": f"significantly worse than {who}",
        "within tolerance": f"within tolerance of {who}",
        "beyond tolerance": f"worse than {who} beyond tolerance",
        "not measured": f"not measured against {who}",
    }[case]


def _reason(
    deltas: list[MetricDelta],
    who: str,
    *,
    refused: bool,
    case: MetricCase | None = None,
    evidence: PairedDifference | None = None,
) -> str:
    """Return a decision's reason: the leading delta's case as its headline, then each
    delta's numbers (the cases of the others named too)."""
    lead = deltas[0]
    case = case or lead.case
    details = [_detail(lead, with_case=lead.case != case)]
    details += [_detail(d, with_case=True) for d in deltas[1:]]
    reason = f"{_headline(case, who, lead.paired)}: " + "; ".join(details)
    if not refused and lead.tolerance is not None and evidence is not None:
        # A tolerance decided; the paired interval is still said, whatever it shows.
        reason += f"; paired, {evidence.describe()}"
    return reason


def _detail(d: MetricDelta, with_case: bool) -> str:
    """Return one gated metric's numbers and rule, e.g. for a decision's reason."""
    if d.tolerance is None:
        if d.paired is None or d.paired.pairs == 0:
            return f"{d.metric} has no per-conversation values to pair (re-evaluate both)"
        text = d.paired.describe() if with_case else d.paired.interval()
        return f"{text}, rule: {d.rule}" if d.passed else f"{text}, the rule asks {d.rule}"
    if d.new is None or d.baseline is None:
        return f"{d.metric} was not measured (eval_prompts: 0, or no replies)"
    if d.passed:
        return (
            f"{d.metric} {fmt_metric(d.new)} vs {fmt_metric(d.baseline)} "
            f"({d.delta:+.4f}, within tolerance {d.tolerance})"
        )
    way = "higher" if d.lower_is_better else "lower"
    return (
        f"{d.metric} {fmt_metric(d.new)} is {abs(d.delta or 0):.4f} {way} than "
        f"{fmt_metric(d.baseline)}, over the tolerance {d.tolerance}"
    )


def fmt_metric(value: Any) -> str:
    """Return a metric for people: 4 decimals, "n/a" when not measured."""
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
