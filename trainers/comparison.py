"""Comparing two models' evaluations, and the promotion decision that follows.

Two numbers are compared only when they were computed on the same rows the same way: the
same test split (the sha256 of its shards) and the same evaluation protocol (max length,
chat template, prompts, generation length, media kept). `compare` refuses anything else
with IncomparableEvaluations; the retrain job re-evaluates the baseline instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.store.manifest import Manifest
from trainers.config import LOWER_IS_BETTER, TrainConfig


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
    sha256: str  # over the split's shard hashes: equal rows, equal hash, whatever the version

    @classmethod
    def of(cls, manifest: Manifest, split: str = "test") -> EvalSet:
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

    def metric(self, name: str) -> float | None:
        """Return a promote_if metric: eval_loss/perplexity overall, or a reply rate."""
        if name == "eval_loss":
            return self.evaluation.get("loss")
        if name == "perplexity":
            return self.evaluation.get("perplexity")
        return (self.evaluation.get("generation") or {}).get(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "path": self.path,
            "eval_set": asdict(self.eval_set),
            "protocol": asdict(self.protocol),
            "reevaluated": self.reevaluated,
            "eval": self.evaluation,
        }


@dataclass(frozen=True)
class MetricDelta:
    """One gated metric: both values, the change, the tolerance and whether it passes."""

    metric: str
    new: float | None
    baseline: float | None
    tolerance: float
    lower_is_better: bool
    passed: bool

    @property
    def delta(self) -> float | None:
        if self.new is None or self.baseline is None:
            return None
        return self.new - self.baseline


@dataclass(frozen=True)
class Decision:
    """Whether the new model is promoted, and why, with every delta behind it."""

    promote: bool
    reason: str
    against: str  # "promoted" or "base"
    eval_set: EvalSet
    deltas: tuple[MetricDelta, ...]
    per_character: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "against": self.against,
            "eval_set": asdict(self.eval_set),
            "deltas": [{**asdict(d), "delta": d.delta} for d in self.deltas],
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


def compare(new: Scored, baseline: Scored, tolerances: dict[str, float]) -> Decision:
    """Return the promotion decision of `new` against `baseline` on the same EvalSet.

    Against the promoted model: promote unless some gated metric is worse by more than its
    tolerance. Against the untrained base model (a dataset's first model): also require a
    strictly lower eval_loss, so the first promotion means the training did something.
    Raises IncomparableEvaluations when the two were not evaluated on the same rows the same way.
    """
    _check_comparable(new, baseline)
    against = "base" if baseline.model_id is None else "promoted"
    deltas = []
    for metric, tolerance in tolerances.items():
        lower = metric in LOWER_IS_BETTER
        a, b = baseline.metric(metric), new.metric(metric)
        if a is None or b is None:
            passed = False
        elif lower:
            passed = b <= a + tolerance
        else:
            passed = b >= a - tolerance
        deltas.append(MetricDelta(metric, b, a, tolerance, lower, passed))
    failed = [d for d in deltas if not d.passed]
    who = "the untrained base model" if against == "base" else f"promoted {baseline.model_id}"
    if failed:
        reason = "; ".join(_failure(d) for d in failed) + f" (against {who})"
        promote = False
    elif against == "base" and not _beats_on_loss(new, baseline):
        reason = (
            f"eval_loss {fmt_metric(new.metric('eval_loss'))} does not beat the untrained base "
            f"model's {fmt_metric(baseline.metric('eval_loss'))}"
        )
        promote = False
    else:
        gated = ", ".join(
            f"{d.metric} {fmt_metric(d.new)} vs {fmt_metric(d.baseline)}" for d in deltas
        )
        verdict = "beats" if against == "base" else "is not worse than"
        reason = f"{verdict} {who} within tolerances: {gated}"
        promote = True
    return Decision(
        promote=promote,
        reason=reason,
        against=against,
        eval_set=new.eval_set,
        deltas=tuple(deltas),
        per_character=_per_character(new, baseline),
    )


def _beats_on_loss(new: Scored, baseline: Scored) -> bool:
    a, b = baseline.metric("eval_loss"), new.metric("eval_loss")
    return a is not None and b is not None and b < a


def _failure(d: MetricDelta) -> str:
    if d.new is None or d.baseline is None:
        return f"{d.metric} was not measured (eval_prompts: 0, or no replies)"
    way = "higher" if d.lower_is_better else "lower"
    return (
        f"{d.metric} {fmt_metric(d.new)} is {abs(d.delta or 0):.4f} {way} than {fmt_metric(d.baseline)}, "
        f"over the tolerance {d.tolerance}"
    )


def fmt_metric(value: Any) -> str:
    """Return a metric for people: 4 decimals, "n/a" when not measured."""
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
