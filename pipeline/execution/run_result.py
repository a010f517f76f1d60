"""What a data job run gives back (`RunResult`, the `--json` of `roleforge run`) and how it
reports progress (`RunProgress`, drawn by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class RecordReuse:
    """Original records a run took from earlier work (`reused`) vs processed anew (`computed`).

    Both count original records of the record pass, as the cache counts them; an unchanged
    rerun found before any work reuses all of its version's (that run's reused + computed).
    `basis` says how the two were counted.
    """

    reused: int
    computed: int
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {"reused": self.reused, "computed": self.computed, "basis": self.basis}


class RunProgress(Protocol):
    """Receives per-stage progress; the CLI draws it with rich."""

    def start(self, stage: str, total: int | None) -> None: ...
    def advance(self, stage: str, n: int) -> None: ...
    def finish(self, stage: str) -> None: ...


class NoProgress:
    """Progress nobody watches (a run from the API or a test)."""

    def start(self, stage: str, total: int | None) -> None:
        pass

    def advance(self, stage: str, n: int) -> None:
        pass

    def finish(self, stage: str) -> None:
        pass


@dataclass
class RunResult:
    """The outcome of a run: the version that holds the data and what each stage did."""

    name: str
    version: int
    content_id: str
    path: str
    unchanged: bool
    splits: dict[str, int]
    counts: dict[str, dict[str, int]]
    split_groups: dict[str, int] | None
    run_id: str
    manifest_path: str
    quarantine_path: str | None
    reuse: RecordReuse
    # True when the inputs, recipe hash and code equalled the latest version's: no stage ran.
    stages_skipped: bool = False
    seconds: float = 0.0
    train: dict[str, Any] | None = None
    unmapped_fields: dict[str, dict[str, int]] = field(default_factory=dict)
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # pass -> node id -> tasks
    quality: dict[str, dict[str, int]] | None = None  # the quality stages' counts (manifest)

    def to_dict(self) -> dict[str, Any]:
        """Return the `--json` object of `roleforge run`."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "content_id": self.content_id,
            "path": self.path,
            "unchanged": self.unchanged,
            "splits": self.splits,
            "split_groups": self.split_groups,
            "counts": self.counts,
            "unmapped_fields": self.unmapped_fields,
            "reused": self.reuse.reused,
            "computed": self.reuse.computed,
            "nodes": self.nodes,
        }
        if self.quality is not None:
            out["quality"] = self.quality
        if self.train is not None:
            out["train"] = self.train
        return out
