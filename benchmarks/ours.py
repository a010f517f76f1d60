"""Our side of each comparison: roleforge's data job, whole or one stage at a time.

`AugmentStageBench` ingests the corpus once, then times the pipeline's record pass alone
(`DataJob._record_pass`: Ray tasks that validate, split and augment slices of the ingested
parts with one decode and write their own parts, returning only index rows) as often as
asked, at any concurrency, in the Ray session already running. The methods are private to
`pipeline.execution.job`; the benchmark reaches into them on purpose, so the figure covers
exactly the code a real run executes for that pass and nothing of the stages around it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks.cpu import CpuMeter


def make_recipe(recipe: dict[str, Any], concurrency: int | None = None):
    """Return the validated Recipe of `recipe`, with the augment stage's concurrency set."""
    from pipeline.recipe import parse_recipe

    data = dict(recipe)
    # The stage benchmarks time the work itself: no record cache (the reruns measure it).
    data["execution"] = {**(data.get("execution") or {}), "cache": False}
    if concurrency is not None:
        execution = dict(data.get("execution") or {})
        stages = dict(execution.get("stages") or {})
        stages["augment"] = {**stages.get("augment", {}), "concurrency": concurrency}
        execution["stages"] = stages
        data["execution"] = execution
    # The job checks the ops itself, as `roleforge run` has it do (on Ray: in a task, so
    # the driver's CPU figures do not count importing the op libraries).
    return parse_recipe(data, base_dir=str(Path.cwd()), check_ops=False)


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
    """Times the pipeline's record pass (validate -> split -> augment, one decode, tasks
    writing their own parts) over one corpus, ingested once; the record cache is off, so
    every run does all the work."""

    def __init__(self, recipe: dict[str, Any]) -> None:
        from pipeline.execution.cluster import ensure_ray
        from pipeline.execution.job import DataJob

        self.recipe = recipe
        ensure_ray()
        job = DataJob(make_recipe(recipe), run_id="bench-prepare")
        started = time.perf_counter()
        self.keys = job._ingest().sort_by([("part", "ascending"), ("row", "ascending")])
        self.ingest_s = time.perf_counter() - started
        self.validate_s = 0.0  # validation is part of the timed record pass now
        job.quarantine.close()
        self.records = self.keys.num_rows
        counts = self.keys.group_by("part", use_threads=False).aggregate([("row", "count")])
        self.validated = sorted(
            zip(counts["part"].to_pylist(), counts["row_count"].to_pylist(), strict=True)
        )
        self.staging_root = Path(job.staging).parent
        self._runs = 0

    def prefix(self, records: int) -> list[tuple[str, int]]:
        """Return the ingested part files, in order, that hold the first `records` records
        (whole files: at least `records`, exactly so when a file boundary falls there)."""
        chosen, total = [], 0
        for path, rows in self.validated:
            if total >= records:
                break
            chosen.append((path, rows))
            total += rows
        return chosen

    def table(self, parts: list[tuple[str, int]] | None = None) -> pa.Table:
        """Return the ingested records (of `parts`, default all) as one memory-mapped table."""
        from pipeline.store.staging import read_part

        return pa.concat_tables([read_part(path) for path, _ in (parts or self.validated)])

    def run(self, concurrency: int | None, parts: list[tuple[str, int]] | None = None) -> StageRun:
        """Return one timed run of the record pass with at most `concurrency` tasks at once,
        over `parts` (default: every ingested record)."""
        import pyarrow.compute as pc

        from pipeline.execution.job import DataJob
        from pipeline.execution.plan import RecordPlan, writer_index
        from pipeline.store.staging import PartSet

        self._runs += 1
        job = DataJob(make_recipe(self.recipe, concurrency), run_id=f"bench-augment-{self._runs}")
        parts_in = parts or self.validated
        todo = self.keys.filter(
            pc.is_in(self.keys["part"], value_set=pa.array([p for p, _ in parts_in]))
        )
        # As `plan_records` does after dedup: the split is planned over the records' groups
        # (no duplicates and no near-duplicate plan: the bench corpus's recipe has no quality).
        split = job.splitter.planned(todo["group"].to_pylist())
        plan = RecordPlan(
            keys=todo,
            duplicates=pa.table({"id": pa.array([], pa.string())}),
            todo=todo,
            split=split,
        )
        meter = CpuMeter()
        started = time.perf_counter()
        rows, rejected = job._record_pass(todo, pa.array([], pa.string()), plan)
        seconds = time.perf_counter() - started
        cpu = meter.read()  # `others`: other users of the machine meanwhile
        job.quarantine.close()
        if rejected:
            raise RuntimeError(f"the record pass rejected {len(rejected)} records: {rejected[0]}")
        index, paths = writer_index(rows)
        return StageRun(
            todo.num_rows, rows.num_rows, seconds, PartSet(paths), index, job.staging, cpu
        )

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
