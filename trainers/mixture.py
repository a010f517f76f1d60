"""`train.mixture`: the training split resampled to chosen weights per source.

The mix keeps the split's size: source s gets round(n * w_s / sum(w)) items, drawn
without replacement while it has enough and topped up with replacement beyond that
(LLaMA-Factory's `interleave_over`); sources without a weight are left out. Draws come
from a generator seeded by the run seed alone, so a mix is the same on every machine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass


class MixtureError(ValueError):
    """The mixture names a source the version's training split does not have."""


@dataclass(frozen=True)
class MixtureReport:
    """What the mixture did: per source the weight, the items available and the items drawn."""

    weights: dict[str, float]
    available: dict[str, int]
    drawn: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def check_mixture(weights: dict[str, float], sources: list[str], dataset: str) -> None:
    """Raise MixtureError when `weights` names a source absent from `sources`."""
    known = set(sources)
    unknown = sorted(set(weights) - known)
    if unknown:
        raise MixtureError(
            f"train.mixture names {', '.join(unknown)}, but the train split of {dataset} has "
            f"sources {', '.join(sorted(known)) or '(none)'}"
        )


def draw_mixture(
    sources: list[str], weights: dict[str, float], seed: int
) -> tuple[list[int], MixtureReport]:
    """Return the item indices of the mix (sorted) and its report; `sources[i]` is item i's."""
    import numpy as np

    by_source: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        by_source.setdefault(s, []).append(i)
    check_mixture(weights, sources, "the dataset")
    total_weight = sum(weights.values())
    n = len(sources)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    drawn: Counter[str] = Counter()
    for source in sorted(weights):
        pool = by_source[source]
        want = round(n * weights[source] / total_weight)
        if want == 0 or not pool:
            continue
        take = rng.permutation(len(pool))[: min(want, len(pool))].tolist()
        if want > len(pool):
            take += rng.integers(0, len(pool), size=want - len(pool)).tolist()
        chosen += [pool[j] for j in take]
        drawn[source] = want
    report = MixtureReport(
        weights=dict(sorted(weights.items())),
        available={s: len(v) for s, v in sorted(by_source.items())},
        drawn={s: drawn.get(s, 0) for s in sorted(by_source)},
    )
    return sorted(chosen), report
