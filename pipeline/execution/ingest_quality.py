"""The quality layer inside `roleforge ingest`: the counts `run --json` reports, without a
version.

`roleforge ingest` reads and validates in one process, without Ray. With the recipe's
`quality:`, `IngestQuality` runs the same check stages the record pass runs
(`quality_stages`: the lint checks and decontamination) over each chunk of valid records
and computes their near-duplicate signatures beside them; at the end it plans
near-duplicates over them and applies the plan (`NearDupStage`) to the light rows (no
media) of the records the checks kept. Of exact duplicates, the first one read is checked
and signed (`run` takes the smallest id: the same turns and media); unlike `run`, ingest
does not quarantine the copies of a record a check quarantined. What a stage quarantines
is returned to the caller, which writes it to the run's quarantine file. The counts have
the shape of the manifest's `quality` (`RunLedger.quality_counts`), plus `clusters` under
`quality.near_duplicate`. The token ledger is `run`'s alone: it needs the model's
processor and counts the variants augmentation makes.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline.execution.passes import StageTally
from pipeline.recipe import Recipe
from pipeline.record.rejection import QuarantineEntry
from pipeline.record.schema import WORK_SCHEMA, records_to_table
from pipeline.stages.base import BatchContext, Stage
from pipeline.stages.dedup import DedupStage
from pipeline.stages.quality.near_dup import NearDupStage
from pipeline.stages.quality.planner import plan_near_duplicates
from pipeline.stages.quality.signatures import SIGNATURE_SCHEMA, near_dup_signatures
from pipeline.stages.quality.stages import quality_stages

# What the near-duplicate stage reads of a record (its quarantine entries quote the turns).
LIGHT_COLUMNS = ["id", "source", "source_ref", "messages"]
# Records checked per batch: media of a batch are held at once, and a batch's text is
# identified together.
CHUNK_ROWS = 256


class IngestQuality:
    """One ingest run's quality checks: `check` each chunk of valid records, then `finish`."""

    def __init__(self, recipe: Recipe):
        assert recipe.quality is not None
        self.config = recipe.quality
        held_out = [recipe.resolve(p) for p in self.config.decontaminate]
        self.stages: list[Stage] = quality_stages(self.config, held_out=held_out)
        self.tallies = {stage.name: StageTally() for stage in self.stages}
        self.near_dup = self.config.near_dup if self.config.near_dup.enabled else None
        self._signatures: list[pa.Table] = []
        self._light: list[pa.Table] = []
        self._seen: set[str] = set()  # exact-duplicate keys of the records checked
        self.clusters = 0

    def check(self, records: list[dict[str, Any]]) -> list[QuarantineEntry]:
        """Run the check stages over valid `records`; return what they quarantined."""
        if not records:
            return []
        table = records_to_table(records, WORK_SCHEMA)
        # As `run` checks one record per exact-duplicate key, the first one read is checked
        # here (a copy shares its turns and media, so it shares the checks' findings).
        first = []
        for key in DedupStage().keys(table):
            first.append(key not in self._seen)
            self._seen.add(key)
        table = table.filter(pa.array(first))
        if self.near_dup is not None:
            # As at `run`'s ingest, every record is signed before the checks.
            self._signatures.append(near_dup_signatures(table, self.near_dup))
        ctx = BatchContext()
        rejected: list[QuarantineEntry] = []
        for stage in self.stages:
            output = stage.process(table, ctx)
            self.tallies[stage.name].add(table.num_rows, output)
            rejected.extend(output.rejects)
            table = output.table
        if self.near_dup is not None and table.num_rows:
            self._light.append(table.select(LIGHT_COLUMNS))
        return rejected

    def finish(self) -> list[QuarantineEntry]:
        """Plan near-duplicates over every checked record and apply the plan; return what
        it quarantined (`action: keep_one`)."""
        if self.near_dup is None:
            return []
        stage = NearDupStage(self._plan(), self.near_dup.group_media)
        tally = self.tallies.setdefault(stage.name, StageTally())
        rejected: list[QuarantineEntry] = []
        ctx = BatchContext()
        for light in self._light:
            output = stage.process(light, ctx)
            tally.add(light.num_rows, output)
            rejected.extend(output.rejects)
        return rejected

    def _plan(self) -> Any:
        signatures = (
            pa.concat_tables(self._signatures)
            if self._signatures
            else SIGNATURE_SCHEMA.empty_table()
        )
        plan = plan_near_duplicates(signatures, self.near_dup)
        self.clusters = len(set(plan.clusters.values()))
        return plan

    def counts(self) -> dict[str, dict[str, int]]:
        """Return the checks' counts as the manifest's `quality` has them (in, out,
        quarantined, stats), with the near-duplicate clusters found."""
        out = {
            name: {
                "in": t.records_in,
                "out": t.out,
                "quarantined": t.quarantined,
                **dict(sorted(t.stats.items())),
            }
            for name, t in self.tallies.items()
        }
        if NearDupStage.name in out:
            out[NearDupStage.name]["clusters"] = self.clusters
        return out
