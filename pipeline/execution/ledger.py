"""The run ledger: what one data job counted, in one object the job, the manifest and the
result read: records in and out of every stage, quarantine reasons, augmentation stats,
rows per split, unmapped reader fields, and the Ray nodes the tasks ran on.

The record pass's tasks count their stages in the order they run (`StageTally`); the ledger
adds them up and maps them onto the manifest's stage table (`STAGES`), where a duplicate of
a rejected record is quarantined with its representative's reason (it shares its content,
so it shares its fate) and the other duplicates are dedup's drops.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from augmenters.stats import AugmentStats
from pipeline.execution.passes import StageTally
from pipeline.execution.plan import RecordPlan
from pipeline.execution.run_result import RecordReuse
from pipeline.record.rejection import QuarantineEntry, TooManyBadRecords, check_bad_fraction
from pipeline.store.commit import STAGES, CommitCheckFailed
from pipeline.store.quarantine import QuarantineWriter


@dataclass
class StageCounts:
    """Records into and out of one stage; `in == out + dropped + quarantined` must hold."""

    records_in: int = 0
    out: int = 0
    dropped: int = 0
    quarantined: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, int]:
        return {
            "in": self.records_in,
            "out": self.out,
            "dropped": self.dropped,
            "quarantined": self.quarantined,
            **self.extra,
        }


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column.combine_chunks()) if len(column) else []
    return {c["values"].as_py(): c["counts"].as_py() for c in counts}


class RunLedger:
    """The counts of one run; every quarantined record goes through `quarantine`."""

    def __init__(self, sources: list[str], quarantine: QuarantineWriter):
        self.counts = {name: StageCounts() for name in STAGES}
        self.reasons: Counter[str] = Counter()
        self.stats = AugmentStats()
        self.originals: Counter[str] = Counter()  # original rows per split
        self.rows: Counter[str] = Counter()  # rows (originals and variants) per split
        self.unmapped_fields: dict[str, Counter[str]] = {name: Counter() for name in sources}
        # Tasks per Ray node id, per pass: where the work ran (a cluster run shows it).
        self.nodes: dict[str, Counter[str]] = {}
        # The record pass's stages as its tasks counted them, in the order they ran.
        self.pass_stages: dict[str, StageTally] = {}
        # The record pass's stage names in run order, and what its quality stages would
        # have counted over the records taken from the cache (`cached_quality`).
        self.pass_order: list[str] = []
        self.cached_quality: dict[str, StageTally] = {}
        # Set by the record pass (from the cache when it runs); None: every original that
        # entered the record pass was computed.
        self.reuse: RecordReuse | None = None
        self.quarantine_file = quarantine

    def ran_on(self, stage: str, node: str) -> None:
        if node:
            self.nodes.setdefault(stage, Counter())[node] += 1

    def add_pass(self, tallies: dict[str, StageTally]) -> None:
        """Add one record-pass task's per-stage counts (in the order its stages ran)."""
        for name, tally in tallies.items():
            self.pass_stages.setdefault(name, StageTally()).merge(tally)

    def check_pass(self, rejected: int) -> None:
        """Raise CommitCheckFailed unless the pass's stages quarantined exactly the
        `rejected` records its tasks' quarantine parts hold, and each stage took in what
        the one before it let out."""
        problems = []
        counted = sum(t.quarantined for t in self.pass_stages.values())
        if counted != rejected:
            problems.append(f"stages quarantined {counted}, quarantine parts hold {rejected}")
        tallies = list(self.pass_stages.items())
        for (before, b), (after, a) in zip(tallies, tallies[1:], strict=False):
            if a.records_in != b.out:
                problems.append(f"{after}: in {a.records_in} != {b.out} let out by {before}")
        if problems:
            raise CommitCheckFailed("record pass counts do not add up: " + "; ".join(problems))

    def quarantine(self, stage: str, entry: QuarantineEntry) -> None:
        """Append a rejected record to the run's quarantine file and count it under `stage`."""
        self.quarantine_file.write(entry)
        self.reasons[entry.reason] += 1
        self.counts[stage].quarantined += 1

    @property
    def quarantined(self) -> int:
        return sum(self.reasons.values())

    def check_bad_fraction(self, limit: float) -> None:
        """Raise TooManyBadRecords (the quarantine file closed, to say why) when more than
        `limit` of the records read so far were quarantined."""
        total = self.counts["ingest"].records_in
        bad = sum(c.quarantined for c in self.counts.values())
        try:
            check_bad_fraction(bad, total, limit, self.reasons, self.quarantine_file.path)
        except TooManyBadRecords:
            self.quarantine_file.close()
            raise

    def settle(self, plan: RecordPlan, rows: pa.Table, rejected: dict[str, str]) -> None:
        """Count validate, dedup, split and augment from the plan and the pass's facts
        (`rejected`: id -> reason of the records the pass quarantined)."""
        keys, duplicates = plan.keys, plan.duplicates
        validate, dedup = self.counts["validate"], self.counts["dedup"]
        validate.records_in = keys.num_rows
        reps = duplicates["representative"].to_pylist()
        of_rejected = [i for i, rep in enumerate(reps) if rep in rejected]
        if of_rejected:
            where = duplicates.take(pa.array(of_rejected, pa.int64()))
            for dup, rep, source, ref in zip(
                *(where[c].to_pylist() for c in ("id", "representative", "source", "source_ref")),
                strict=True,
            ):
                self.quarantine(
                    "validate",
                    QuarantineEntry(
                        stage="validate",
                        reason=rejected[rep],
                        message=f"exact duplicate of {rep}, which was rejected for it",
                        source=source or "",
                        source_ref=ref or "",
                        record_id=dup,
                    ),
                )
        validate.out = validate.records_in - validate.quarantined
        dedup.records_in = validate.out
        dedup.dropped = duplicates.num_rows - len(of_rejected)
        dedup.out = dedup.records_in - dedup.dropped
        split = self.counts["split"]
        split.records_in = split.out = dedup.out
        augment = self.counts["augment"]
        augment.records_in = split.out
        is_variant = pc.is_valid(rows["parent_id"])
        variants = int(pc.sum(is_variant).as_py() or 0)
        augment.out = rows.num_rows - variants
        augment.extra = {"variants": variants, "empty_variants": self.stats.empty_variants}
        # Only the split column is filtered: the rows' other strings are not copied.
        self.originals.update(_value_counts(rows["split"].filter(pc.invert(is_variant))))
        self.rows.update(_value_counts(rows["split"]))

    def record_reuse(self) -> RecordReuse:
        """Return the cache's counts, or (no record pass counted them) every original that
        validation read as computed."""
        if self.reuse is not None:
            return self.reuse
        computed = self.counts["validate"].records_in
        return RecordReuse(0, computed, "no per-record cache: every original was computed")

    def quality_counts(self) -> dict[str, dict[str, int]]:
        """Return the record pass's quality stages (quality.<check>, quality.near_duplicate,
        quality.tokens) as counted, over computed and cached records alike: in, out,
        quarantined and their stats. Their quarantined records are counted under validate
        in the stage table: like validation's, they are originals the record pass
        rejected, and the table's chain stays the one the commit check knows."""
        names = [n for n in self.pass_order or self.pass_stages if n.startswith("quality.")]
        out = {}
        for name in names:
            t = StageTally()
            for part in (self.pass_stages.get(name), self.cached_quality.get(name)):
                if part is not None:
                    t.merge(part)
            out[name] = {
                "in": t.records_in,
                "out": t.out,
                "quarantined": t.quarantined,
                **dict(sorted(t.stats.items())),
            }
        return out

    def counts_dict(self) -> dict[str, dict[str, int]]:
        return {name: c.to_dict() for name, c in self.counts.items()}
