"""Paired comparison of two models on the same test conversations, with a bootstrap interval.

Both models are scored on the same conversations, so the evidence is in the differences:
per conversation, new minus baseline. Their mean is the effect; a percentile bootstrap over
conversations (resampled with replacement, a fixed seed, so a report reproduces) gives its
confidence interval. The interval decides the case: entirely on the better side is
"significantly better", entirely on the worse side "significantly worse", across zero "no
detectable difference", with the number of conversations a test of this size would need to
see the observed effect (a normal approximation at 80% power).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

from trainers.config import MIN_PAIRS

Case = Literal["significantly better", "no detectable difference", "significantly worse"]

RESAMPLES = 2000
POWER = 0.8


@dataclass(frozen=True)
class PairedDifference:
    """The mean per-conversation difference (new - baseline) and its bootstrap interval."""

    metric: str
    pairs: int
    mean: float
    low: float
    high: float
    confidence: float
    lower_is_better: bool
    seed: int
    resamples: int = RESAMPLES
    sd: float = 0.0

    @property
    def case(self) -> Case:
        if self.pairs < MIN_PAIRS:
            return "no detectable difference"
        better_side = self.high < 0 if self.lower_is_better else self.low > 0
        worse_side = self.low > 0 if self.lower_is_better else self.high < 0
        if better_side:
            return "significantly better"
        if worse_side:
            return "significantly worse"
        return "no detectable difference"

    def conversations_needed(self) -> int | None:
        """Return how many test conversations would show an effect of this size (None: no
        effect, or no spread, to size a test by)."""
        if self.mean == 0 or self.sd == 0:
            return None
        z = NormalDist().inv_cdf(1 - (1 - self.confidence) / 2) + NormalDist().inv_cdf(POWER)
        return max(MIN_PAIRS, math.ceil((z * self.sd / abs(self.mean)) ** 2))

    def interval(self) -> str:
        """Return the mean difference and its interval in one phrase (no case)."""
        return (
            f"{self.metric} {self.mean:+.4f} per conversation ({self.confidence:.0%} CI "
            f"{self.low:+.4f} to {self.high:+.4f}, {self.pairs} test conversations)"
        )

    def describe(self) -> str:
        """Return the difference and case in one phrase, e.g. for a decision's reason."""
        text = f"{self.interval()}: {self.case}"
        if self.pairs < MIN_PAIRS:
            return text + f" (fewer than {MIN_PAIRS} paired conversations)"
        if self.case == "no detectable difference":
            needed = self.conversations_needed()
            if needed is not None:
                text += f"; about {needed} test conversations would show a difference this size"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "case": self.case,
            "conversations_needed": self.conversations_needed(),
        }


def paired_bootstrap(
    metric: str,
    new: Mapping[str, float],
    baseline: Mapping[str, float],
    *,
    confidence: float,
    lower_is_better: bool,
    seed: int,
    resamples: int = RESAMPLES,
) -> PairedDifference:
    """Return the paired difference of `new` and `baseline` (values by conversation id) over
    the conversations both scored, with a seeded percentile-bootstrap interval."""
    import numpy as np

    ids = sorted(set(new) & set(baseline))
    diffs = np.array([new[i] - baseline[i] for i in ids], dtype=np.float64)
    if not len(diffs):
        return PairedDifference(metric, 0, 0.0, 0.0, 0.0, confidence, lower_is_better, seed)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return PairedDifference(
        metric=metric,
        pairs=len(diffs),
        mean=float(diffs.mean()),
        low=float(low),
        high=float(high),
        confidence=confidence,
        lower_is_better=lower_is_better,
        seed=seed,
        resamples=resamples,
        sd=float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0,
    )
