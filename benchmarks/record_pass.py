"""CPU per record of the record pass, in this process, beside the plain loop's.

The efficiency figure of `run_all.py` runs the pass in Ray tasks and splits its CPU by
process; this one calls `passes.record_pass` directly (no Ray, no scheduling), on the
same corpus, recipe and stages, so what it measures is the pass's own work per record,
and `--profile` shows where that goes. Both sides run on exactly the ingested records
(media bytes read from the staged parts); the loop is `baselines.plain_loop`. CPU is
process CPU (user + system, every thread) on both sides.

`--steps` adds the CPU of each step per record, side by side: the pass's stages, the
augmenter's draw/apply and its encoders, the variants' conversion to Arrow and the part
write; the loop's decodes and its per-modality augment + encode. Timing wrappers cost a
few microseconds a call, so read the steps against each other, not against the totals
of a run without them. cProfile's default clock is wall time: on a shared machine pass
`time.process_time` to it (as `--profile` does) or its figures scale with the load.

    python -m benchmarks.record_pass [--records 200] [--reps 3] [--steps] [--profile out.prof]
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

WARM_RECORDS = 16


class InProcessPass:
    """The benchmark recipe's record pass over one ingested corpus, run in this process."""

    def __init__(self, jsonl: Path, folder: Path) -> None:
        from benchmarks.ours import make_recipe
        from benchmarks.workload import recipe_dict
        from pipeline.execution.passes import IngestShared, IngestTask, build_stages, ingest_source
        from pipeline.readers import source_files
        from pipeline.readers.source_fs import SourceFS
        from pipeline.stages.split import SplitStage
        from pipeline.store.fs import LocalFS

        self.folder = folder
        self.recipe = make_recipe(recipe_dict(jsonl, folder / "store"))
        self.fs = LocalFS()
        splitter = SplitStage(self.recipe.split, self.recipe.seed)
        source = self.recipe.sources[0]
        task = IngestTask(
            index=0,
            source=source,
            files=source_files(source, self.recipe),
            book_entries=False,
            folder=str(folder / "ingest"),
            quarantine_path=str(folder / "ingest-quarantine.jsonl"),
        )
        shared = IngestShared(self.recipe, splitter, self.fs, SourceFS.of(self.recipe))
        self.keys = ingest_source(task, shared).keys
        self.stages = build_stages(self.recipe, splitter.planned(self.keys["group"].to_pylist()))
        self._runs = 0

    def table(self) -> pa.Table:
        """Return the ingested records as one memory-mapped table, in part order."""
        from pipeline.store.staging import read_part

        parts = sorted(set(self.keys["part"].to_pylist()))
        return pa.concat_tables([read_part(p) for p in parts])

    def run(self, records: int | None = None) -> tuple[int, float]:
        """Return (records in, process CPU seconds) of one record pass over the first
        `records` ingested records (default all), written to a fresh output part."""
        from pipeline.execution.passes import PassContext, PassTask, Slice, record_pass

        self._runs += 1
        slices, left = [], records if records is not None else self.keys.num_rows
        counts = self.keys.group_by("part", use_threads=False).aggregate([("row", "count")])
        for part, rows in sorted(
            zip(counts["part"].to_pylist(), counts["row_count"].to_pylist(), strict=True)
        ):
            if left <= 0:
                break
            slices.append(Slice(part, 0, min(rows, left)))
            left -= rows
        ctx = PassContext(
            fs=self.fs,
            stages=self.stages,
            skip_ids=pa.array([], pa.string()),
            batch_size=self.recipe.execution.batch_size,
        )
        task = PassTask(
            slices=slices,
            output=str(self.folder / "records" / f"run-{self._runs}.arrow"),
            quarantine_path=str(self.folder / "records" / f"run-{self._runs}.jsonl"),
        )
        started = time.process_time()
        outcome = record_pass(task, ctx)
        cpu = time.process_time() - started
        os.remove(task.output)
        return outcome.records_in, cpu


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@contextlib.contextmanager
def timed_steps(steps: list[tuple[Any, str, str]], into: Counter[str]) -> Iterator[None]:
    """Add the process CPU seconds spent in each (owner, attribute, label) callable to
    `into[label]` while the block runs; the originals are put back after it."""
    # What each owner itself held (None: it inherited the callable, so the wrapper goes).
    saved = [(owner, name, vars(owner).get(name)) for owner, name, _ in steps]

    def timed(fn: Any, label: str) -> Any:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                into[label] += time.process_time() - started

        return call

    try:
        for owner, name, label in steps:
            setattr(owner, name, timed(getattr(owner, name), label))
        yield
    finally:
        for owner, name, original in reversed(saved):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def _pass_steps(bench: InProcessPass) -> list[tuple[Any, str, str]]:
    """The record pass's steps worth a line: each stage, and inside augment what the loop
    does too (draw + apply, encode) apart from what it does not (Arrow rows, part write)."""
    import augmenters.record as record
    import pipeline.stages.augment as augment
    from pipeline.stages.base import BatchContext
    from pipeline.store.staging import PartWriter

    # One wrapper per class: stages of one class (none so far) share a line.
    classes = {type(stage): stage.name for stage in bench.stages}
    steps: list[tuple[Any, str, str]] = [
        (cls, "process", f"stage {name}") for cls, name in classes.items()
    ]
    return steps + [
        (BatchContext, "rows", "  rows to Python (ctx.rows)"),
        (record._VariantBuilder, "apply", "  augment: ops applied"),
        (record._TextLane, "draw", "  augment: text drawn (rewrites the turn)"),
        (record._ImageLane, "draw", "  augment: image params drawn"),
        (record._AudioLane, "draw", "  augment: audio params drawn"),
        (record.RecordAugmenter, "_rng", "  augment: generators seeded"),
        (record.RecordAugmenter, "_assemble", "  augment: variant assembled"),
        (record._VariantBuilder, "changed_media", "  augment: encode changed media"),
        (augment.AugmentStage, "_within_limits", "  augment: variants held to the limits"),
        (augment, "records_to_table", "  augment: variants to Arrow"),
        (PartWriter, "write", "part write"),
    ]


def _loop_steps() -> list[tuple[Any, str, str]]:
    from benchmarks.baselines import PlainChain

    return [
        (PlainChain, name, f"loop {name}")
        for name in (
            "decode_image",
            "decode_audio",
            "augment_image",
            "augment_audio",
            "augment_messages",
        )
    ]


def measure_steps(bench: InProcessPass, chain: Any, loop_records: list[Any]) -> dict[str, Any]:
    """Return the CPU ms per record of each step of one pass and one loop over the same
    records, and each side's minor page faults per record."""
    spent: Counter[str] = Counter()
    with timed_steps(_loop_steps(), spent):
        faults = _minor_faults()
        started = time.process_time()
        for record in loop_records:
            chain.variants(record)
        loop_cpu = time.process_time() - started
        loop_faults = _minor_faults() - faults
    with timed_steps(_pass_steps(bench), spent):
        faults = _minor_faults()
        n, pass_cpu = bench.run()
        pass_faults = _minor_faults() - faults
    n_loop = len(loop_records)
    pass_steps = [label for _, _, label in _pass_steps(bench)]
    loop_steps = [label for _, _, label in _loop_steps()]
    return {
        "loop_ms_per_record": round(loop_cpu / n_loop * 1e3, 2),
        "pass_ms_per_record": round(pass_cpu / n * 1e3, 2),
        "loop_minor_faults_per_record": round(loop_faults / n_loop, 1),
        "pass_minor_faults_per_record": round(pass_faults / n, 1),
        "pass_steps_ms_per_record": {k: round(spent[k] / n * 1e3, 3) for k in pass_steps},
        "loop_steps_ms_per_record": {k: round(spent[k] / n_loop * 1e3, 3) for k in loop_steps},
        "load_average": os.getloadavg(),
    }


def measure(
    records: int, reps: int, profile: str | None = None, steps: bool = False
) -> dict[str, Any]:
    """Return the pass's and the loop's CPU ms per record (medians of `reps`) and their ratio."""
    from benchmarks.baselines import PlainChain, media_records_from_table
    from benchmarks.corpus import build_corpus
    from benchmarks.workload import AUGMENT

    corpus = build_corpus(records)
    with tempfile.TemporaryDirectory(prefix="roleforge-record-pass-") as tmp:
        bench = InProcessPass(corpus.jsonl, Path(tmp))
        loop_records = media_records_from_table(bench.table())
        chain = PlainChain(AUGMENT)
        bench.run(WARM_RECORDS)  # builds the ops, imports the libraries
        for record in loop_records[:WARM_RECORDS]:
            chain.variants(record)
        ours, loop = [], []
        for _ in range(reps):
            started = time.process_time()
            for record in loop_records:
                chain.variants(record)
            loop.append((time.process_time() - started) / len(loop_records) * 1e3)
            n, cpu = bench.run()
            ours.append(cpu / n * 1e3)
        step_figures = measure_steps(bench, chain, loop_records) if steps else None
        if profile:
            import cProfile

            # Process CPU, not cProfile's default wall clock: under load that scales every
            # figure by how long the process waited for a core.
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            bench.run()
            profiler.disable()
            profiler.dump_stats(profile)
    pass_ms, loop_ms = statistics.median(ours), statistics.median(loop)
    figures = {
        "records": len(loop_records),
        "pass_ms_per_record": round(pass_ms, 2),
        "loop_ms_per_record": round(loop_ms, 2),
        "efficiency": round(loop_ms / pass_ms, 3),
        "pass_samples": [round(x, 2) for x in ours],
        "loop_samples": [round(x, 2) for x in loop],
        "load_average": os.getloadavg(),
    }
    if step_figures is not None:
        figures["steps"] = step_figures
    return figures


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of one more pass to this file")
    parser.add_argument(
        "--steps", action="store_true", help="also the CPU per record of each step, both sides"
    )
    args = parser.parse_args()
    print(json.dumps(measure(args.records, args.reps, args.profile, args.steps), indent=2))


if __name__ == "__main__":
    main()
