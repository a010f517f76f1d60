"""`roleforge ingest`: read and validate every source, quarantine what is broken, count it all
(with the recipe's `quality:`, the quality checks too: `ingest_quality.IngestQuality`)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.execution.ingest_quality import CHUNK_ROWS, IngestQuality
from pipeline.readers import SourceReadStats, check_source_paths, read_source
from pipeline.recipe import Recipe
from pipeline.record.ids import new_run_id
from pipeline.record.rejection import (
    REASONS,
    QuarantineEntry,
    TooManyBadRecords,
    check_bad_fraction,
)
from pipeline.stages.validate import ValidateStage
from pipeline.store.lock import RunLease
from pipeline.store.quarantine import QuarantineWriter
from pipeline.store.read import Store
from pipeline.store.store_fs import store_fs

log = logging.getLogger(__name__)
TOP_REASONS = 5


@dataclass
class SourceCounts:
    """Records read from one source, and how many were kept or quarantined."""

    name: str
    records_in: int = 0
    valid: int = 0
    quarantined: int = 0
    read: SourceReadStats = field(default_factory=SourceReadStats)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "records_in": self.records_in,
            "valid": self.valid,
            "quarantined": self.quarantined,
            **self.read.to_dict(),
        }


@dataclass
class IngestReport:
    """Counts of one ingest run: kept, quarantined by reason, per source, and where the rejects went."""

    valid: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    quarantine_path: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    # The quality checks' counts (`IngestQuality.counts`); None: the recipe has no `quality:`.
    quality: dict[str, dict[str, int]] | None = None

    def top_reasons(self, n: int = TOP_REASONS) -> list[tuple[str, int]]:
        """Return the `n` most frequent quarantine reasons with their counts."""
        return Counter(self.quarantine_reasons).most_common(n)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as the `--json` object of `roleforge ingest`."""
        return {
            "valid": self.valid,
            "quarantined": self.quarantined,
            "quarantine_reasons": dict(self.quarantine_reasons),
            "quarantine_path": self.quarantine_path,
            "sources": [dict(s) for s in self.sources],
            **({"quality": self.quality} if self.quality is not None else {}),
        }

    def print_table(self) -> None:
        """Print the counts per source and per reason as rich tables."""
        from rich.console import Console
        from rich.table import Table

        console = Console()
        per_source = Table(title="records per source")
        for column in ("source", "records in", "valid", "quarantined"):
            per_source.add_column(column, justify="left" if column == "source" else "right")
        for s in self.sources:
            per_source.add_row(
                s["name"], str(s["records_in"]), str(s["valid"]), str(s["quarantined"])
            )
        per_source.add_row(
            "[bold]total",
            str(self.valid + self.quarantined),
            str(self.valid),
            str(self.quarantined),
        )
        console.print(per_source)
        for s in self.sources:
            for file, fmt in s.get("formats", {}).items():
                console.print(f"{s['name']}: {file} read as {fmt}", soft_wrap=True)
            if s.get("unmapped_fields"):
                fields = ", ".join(f"{k} ({v})" for k, v in s["unmapped_fields"].items())
                console.print(f"{s['name']}: fields not carried: {fields}", soft_wrap=True)
        if self.quarantine_reasons:
            per_reason = Table(title="quarantined per reason")
            per_reason.add_column("reason")
            per_reason.add_column("count", justify="right")
            per_reason.add_column("meaning")
            for reason, count in self.top_reasons(len(self.quarantine_reasons)):
                per_reason.add_row(reason, str(count), REASONS.get(reason, ""))
            console.print(per_reason)
        if self.quality is not None:
            checks = Table(title="quality checks")
            for column in ("check", "in", "quarantined", "found"):
                checks.add_column(column, justify="left" if column != "in" else "right")
            for name, counts in self.quality.items():
                found = {k: v for k, v in counts.items() if k not in ("in", "out", "quarantined")}
                shown = ", ".join(f"{k} {v}" for k, v in found.items() if v)
                checks.add_row(name, str(counts["in"]), str(counts["quarantined"]), shown or "-")
            console.print(checks)
        console.print(f"quarantine: {self.quarantine_path}", soft_wrap=True)


def run_ingest(recipe: Recipe, run_id: str | None = None) -> IngestReport:
    """Return the counts of reading and validating every source; rejects go to the quarantine file.

    Runs sequentially in this process. Raises RecipeError when a source path is missing (before
    any work) and TooManyBadRecords when the quarantined share exceeds `max_bad_fraction`.
    """
    check_source_paths(recipe)
    run_id = run_id or new_run_id()
    validate = ValidateStage(recipe.limits)
    fs, store_path = store_fs(recipe.store_uri, **recipe.store_options.fs_kwargs())
    store = Store(store_path, recipe.name, fs)
    path = store.quarantine_path(run_id)
    counts = [SourceCounts(s.name) for s in recipe.sources]
    quality = IngestQuality(recipe) if recipe.quality is not None else None
    # The lease keeps `gc` off the quarantine file while this ingest writes it.
    with RunLease(store, run_id), QuarantineWriter(path, store.fs) as writer:

        def rejected_by_quality(entries: list[QuarantineEntry]) -> None:
            by_name = {c.name: c for c in counts}
            for entry in entries:
                by_name[entry.source].valid -= 1
                by_name[entry.source].quarantined += 1
                writer.write(entry)

        for source, count in zip(recipe.sources, counts, strict=True):
            valid: list[dict[str, Any]] = []
            for item in read_source(source, recipe, count.read):
                # Unusable characters-file lines arrive as entries too, and count as input.
                count.records_in += 1
                entry = item if isinstance(item, QuarantineEntry) else validate.rejection(item)
                if entry is None:
                    count.valid += 1
                    if quality is not None:
                        valid.append(item)
                        if len(valid) >= CHUNK_ROWS:
                            rejected_by_quality(quality.check(valid))
                            valid = []
                else:
                    count.quarantined += 1
                    writer.write(entry)
            if quality is not None:
                rejected_by_quality(quality.check(valid))
            log.info(
                "source %s: %d in, %d valid, %d quarantined",
                source.name,
                count.records_in,
                count.valid,
                count.quarantined,
            )
        if quality is not None:
            rejected_by_quality(quality.finish())
        reasons = dict(writer.counts.most_common())
    if not store.fs.exists(path):
        # The report always names a file that exists, empty when nothing was rejected.
        store.fs.write_bytes(path, b"")
    report = IngestReport(
        valid=sum(c.valid for c in counts),
        quarantined=sum(c.quarantined for c in counts),
        quarantine_reasons=reasons,
        quarantine_path=path,
        sources=[c.to_dict() for c in counts],
        quality=quality.counts() if quality is not None else None,
    )
    if report.valid + report.quarantined == 0:
        log.warning("recipe %s: the sources hold no records", recipe.name)
    try:
        check_bad_fraction(
            report.quarantined,
            report.valid + report.quarantined,
            recipe.max_bad_fraction,
            reasons,
            path,
        )
    except TooManyBadRecords as exc:
        exc.report = report
        raise
    return report
