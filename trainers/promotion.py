"""The promotion protocol of a retrain: compare, then compare-and-swap the pointer.

A retrain compares its new model with the model promoted when it started. If another
retrain promoted a model meanwhile, the swap is refused (PromotionConflict) and the new
model is compared again, now against that one; so two concurrent retrains never both
promote without one having been compared with the other's model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from trainers.comparison import Decision, Scored, compare
from trainers.config import SignificanceRule
from trainers.registry import ModelRegistry, PromotedPointer, PromotionConflict

logger = logging.getLogger(__name__)

MAX_ROUNDS = 5  # each extra round means another run promoted while this one compared


class PromotedModelKeptChanging(RuntimeError):
    """Other runs promoted a model in each of MAX_ROUNDS comparison rounds."""


@dataclass(frozen=True)
class PromotionOutcome:
    """The final comparison, the baseline it was against, and the pointer after it."""

    decision: Decision
    baseline: Scored
    pointer: PromotedPointer | None  # None: nothing is promoted (a first model refused)
    rounds: int


def decide_and_promote(
    registry: ModelRegistry,
    new: Scored,
    baseline_of: Callable[[str | None], Scored],
    rules: dict[str, float | SignificanceRule],
    expected: str | None,
) -> PromotionOutcome:
    """Compare `new` with the promoted model (`baseline_of(id)`; None: the untrained base),
    starting from `expected`, and promote it when it passes; return the final outcome."""
    for rounds in range(1, MAX_ROUNDS + 1):
        baseline = baseline_of(expected)
        decision = compare(new, baseline, rules)
        try:
            if decision.promote:
                pointer = registry.promote(new.model_id, decision.reason, expected=expected)
            else:
                pointer = registry.confirm(expected)
        except PromotionConflict as conflict:
            logger.info("%s; comparing against %s", conflict, conflict.current)
            expected = conflict.current
            continue
        return PromotionOutcome(decision, baseline, pointer, rounds)
    raise PromotedModelKeptChanging(
        f"the promoted model changed {MAX_ROUNDS} times while this retrain compared; run it again"
    )
