"""What augmentation did: variants made, empty copies, guard decisions and per-op counts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class OpCounts:
    """How often one op changed a variant, and how often it was chosen but could not run."""

    applied: int = 0
    skipped: int = 0


@dataclass
class AugmentStats:
    """Counts over any number of records; tasks make one each and the driver merges them.

    `to_dict()` is the manifest's `augmentation.stats` block; `from_dict` reads it back
    (stats cross process boundaries as JSON).
    """

    variants: int = 0
    empty_variants: int = 0
    ops: dict[str, OpCounts] = field(default_factory=dict)
    flip_guard_skipped: int = 0
    flip_guard_swapped: int = 0
    text_skipped: int = 0
    # Records whose variants could not be made (an op raised): the original stays.
    failed_variants: int = 0
    # Variants dropped after augmentation for breaking a limit or invariant (the original stays).
    dropped_variants: int = 0

    def count(self, modality: str, name: str, outcome: Literal["applied", "skipped"]) -> None:
        """Count one outcome of the op `name` of `modality`."""
        slot = self.ops.get(f"{modality}:{name}")
        if slot is None:
            slot = self.ops[f"{modality}:{name}"] = OpCounts()
        setattr(slot, outcome, getattr(slot, outcome) + 1)

    def merge(self, other: AugmentStats) -> None:
        """Add `other`'s counts to these (ops first seen in `other` keep its order)."""
        for f in dataclasses.fields(self):
            if f.name != "ops":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for key, counts in other.ops.items():
            slot = self.ops.setdefault(key, OpCounts())
            slot.applied += counts.applied
            slot.skipped += counts.skipped

    def to_dict(self) -> dict[str, Any]:
        """Return the counts as plain JSON data."""
        # Field by field, not dataclasses.asdict: that deep-copies every int (~0.4 ms a
        # record in the record pass, which keeps each augmented original's stats).
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in _FIELDS}
        out["ops"] = {
            key: {"applied": c.applied, "skipped": c.skipped} for key, c in self.ops.items()
        }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentStats:
        """Return the stats `to_dict()` wrote."""
        ops = {key: OpCounts(**counts) for key, counts in data.get("ops", {}).items()}
        return cls(**{**data, "ops": ops})


# Fields in declaration order, as dataclasses.asdict lists them (the JSON keeps that order).
_FIELDS = dataclasses.fields(AugmentStats)
