"""Our side of each comparison: roleforge's data job, whole or one stage at a time.

`AugmentStageBench` ingests and validates the corpus once, then times the pipeline's augment
stage alone (`DataJob._augment`: the Ray pass of dedup + split + augment over the staged
parts, with the driver streaming its results into the next part files) as often as asked,
at any concurrency, in the Ray session already running. The stage methods are private to
`pipeline.run`; the benchmark reaches into them on purpose, so the figure covers exactly the
code a real run executes for that stage and nothing of the stages around it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks.cpu import cpu_delta, machine_busy, tree_cpu


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
    cpu: dict[str, float]  # CPU seconds of the process tree during the stage, by role

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds


class AugmentStageBench:
    """Times the pipeline's augment stage over one corpus, ingested and validated once."""

    def __init__(self, recipe: dict[str, Any]) -> None:
        from pipeline.execution.cluster import configure_data_context, ensure_ray
        from pipeline.execution.job import DataJob

        self.recipe = recipe
        job = DataJob(make_recipe(recipe), run_id="bench-prepare")
        started = time.perf_counter()
        parts, rows = job._ingest()
        self.ingest_s = time.perf_counter() - started
        ensure_ray()
        configure_data_context()
        started = time.perf_counter()
        self.validated, self.keys = job._validate(parts, rows)
        self.validate_s = time.perf_counter() - started
        job.quarantine.close()
        self.records = self.keys.num_rows
        self.staging_root = Path(job.staging).parent
        self._runs = 0

    def prefix(self, records: int) -> list[tuple[str, int]]:
        """Return the validated part files, in order, that hold the first `records` records
        (whole files: at least `records`, exactly so when a file boundary falls there)."""
        chosen, total = [], 0
        for path, rows in self.validated:
            if total >= records:
                break
            chosen.append((path, rows))
            total += rows
        return chosen

    def table(self, parts: list[tuple[str, int]] | None = None) -> pa.Table:
        """Return the validated records (of `parts`, default all) as one memory-mapped table."""
        from pipeline.store.staging import read_part

        return pa.concat_tables([read_part(path) for path, _ in (parts or self.validated)])

    def run(self, concurrency: int | None, parts: list[tuple[str, int]] | None = None) -> StageRun:
        """Return one timed run of the augment stage with at most `concurrency` tasks at once,
        over `parts` (default: every validated record)."""
        from pipeline.execution.job import DataJob

        self._runs += 1
        job = DataJob(make_recipe(self.recipe, concurrency), run_id=f"bench-augment-{self._runs}")
        parts_in = parts or self.validated
        records = sum(rows for _, rows in parts_in)
        job._dedup_and_split_counts(records, 0)
        # As `DataJob._stages` does after dedup: the split is planned over the group keys of
        # the records the pass gets (the keys are in part order, so a prefix of parts is a
        # prefix of the keys).
        job.splitter = job.splitter.planned(self.keys["group"].slice(0, records).to_pylist())
        no_duplicates = pa.array([], pa.string())
        cpu_before, machine_before = tree_cpu(os.getpid()), machine_busy()
        started = time.perf_counter()
        parts, index = job._augment(parts_in, records, no_duplicates)
        seconds = time.perf_counter() - started
        cpu = cpu_delta(cpu_before, tree_cpu(os.getpid()))
        # CPU that processes outside this tree took meanwhile: other users of the machine.
        cpu["others"] = max(0.0, machine_busy() - machine_before - sum(cpu.values()))
        job.quarantine.close()
        quarantined = job.counts["augment"].quarantined
        if quarantined:
            raise RuntimeError(
                f"augment stage quarantined {quarantined} records; see {job.quarantine.path}"
            )
        return StageRun(records, index.num_rows, seconds, parts, index, job.staging, cpu)

    def discard(self, run: StageRun) -> None:
        """Delete what a timed run staged."""
        shutil.rmtree(run.staging, ignore_errors=True)

    def close(self) -> None:
        """Delete everything this bench staged."""
        shutil.rmtree(self.staging_root, ignore_errors=True)


class StageClock:
    """A `RunProgress` that records when each stage of a data job started and finished."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def start(self, stage: str, total: int | None) -> None:
        self.started[stage] = time.perf_counter()

    def advance(self, stage: str, n: int) -> None:
        pass

    def finish(self, stage: str) -> None:
        self.seconds[stage] = time.perf_counter() - self.started[stage]


def run_job(recipe: dict[str, Any]) -> tuple[float, Any, dict[str, float]]:
    """Return the wall seconds, the result and per-stage seconds of a whole data job
    (ingest to commit); `other` is what no stage reports (input hashing, Ray pass
    start-up between stages, commit and cards)."""
    from pipeline.execution.job import DataJob

    clock = StageClock()
    started = time.perf_counter()
    result = DataJob(make_recipe(recipe), progress=clock).run()
    seconds = time.perf_counter() - started
    stages = {k: round(v, 2) for k, v in clock.seconds.items()}
    stages["other"] = round(seconds - sum(clock.seconds.values()), 2)
    return seconds, result, stages
