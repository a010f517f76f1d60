"""Our side of each comparison: roleforge's data job, whole or one stage at a time.

`AugmentStageBench` ingests and validates the corpus once, then times the pipeline's augment
stage alone (`DataJob._augment`: the Ray pass of dedup + split + augment over the staged
parts, with the driver streaming its results into the next part files) as often as asked,
at any concurrency, in the Ray session already running. The stage methods are private to
`pipeline.run`; the benchmark reaches into them on purpose, so the figure covers exactly the
code a real run executes for that stage and nothing of the stages around it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa


def make_recipe(recipe: dict[str, Any], concurrency: int | None = None):
    """Return the validated Recipe of `recipe`, with the augment stage's concurrency set."""
    from pipeline.recipe import parse_recipe

    data = dict(recipe)
    if concurrency is not None:
        execution = dict(data.get("execution") or {})
        stages = dict(execution.get("stages") or {})
        stages["augment"] = {**stages.get("augment", {}), "concurrency": concurrency}
        execution["stages"] = stages
        data["execution"] = execution
    return parse_recipe(data, base_dir=str(Path.cwd()))


@dataclass
class StageRun:
    """One timed augment stage: input records, rows out, wall seconds, and what it left."""

    records: int
    rows_out: int
    seconds: float
    parts: Any  # pipeline.staging.PartSet of the augmented records
    index: pa.Table  # pipeline.writer.INDEX_SCHEMA rows pointing into `parts`
    staging: str

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds


class AugmentStageBench:
    """Times the pipeline's augment stage over one corpus, ingested and validated once."""

    def __init__(self, recipe: dict[str, Any]) -> None:
        from pipeline.execution import configure_data_context, ensure_ray
        from pipeline.run import DataJob

        self.recipe = recipe
        job = DataJob(make_recipe(recipe), run_id="bench-prepare")
        started = time.perf_counter()
        parts, rows = job._ingest()
        self.ingest_s = time.perf_counter() - started
        ensure_ray()
        configure_data_context()
        started = time.perf_counter()
        self.validated, keys = job._validate(parts, rows)
        self.validate_s = time.perf_counter() - started
        job.quarantine.close()
        self.records = keys.num_rows
        self.staging_root = Path(job.staging).parent
        self._runs = 0

    def run(self, concurrency: int | None) -> StageRun:
        """Return one timed run of the augment stage with at most `concurrency` tasks at once."""
        from pipeline.run import DataJob

        self._runs += 1
        job = DataJob(make_recipe(self.recipe, concurrency), run_id=f"bench-augment-{self._runs}")
        job._dedup_and_split_counts(self.records, 0)
        no_duplicates = pa.array([], pa.string())
        started = time.perf_counter()
        parts, index = job._augment(self.validated, self.records, no_duplicates)
        seconds = time.perf_counter() - started
        job.quarantine.close()
        quarantined = job.counts["augment"].quarantined
        if quarantined:
            raise RuntimeError(
                f"augment stage quarantined {quarantined} records; see {job.quarantine.path}"
            )
        return StageRun(self.records, index.num_rows, seconds, parts, index, job.staging)

    def discard(self, run: StageRun) -> None:
        """Delete what a timed run staged."""
        shutil.rmtree(run.staging, ignore_errors=True)

    def close(self) -> None:
        """Delete everything this bench staged."""
        shutil.rmtree(self.staging_root, ignore_errors=True)


def run_job(recipe: dict[str, Any]) -> tuple[float, Any]:
    """Return the wall seconds and the result of a whole data job (ingest to commit)."""
    from pipeline.run import DataJob

    started = time.perf_counter()
    result = DataJob(make_recipe(recipe)).run()
    return time.perf_counter() - started, result
