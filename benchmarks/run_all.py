"""Run every roleforge benchmark and write benchmarks/results.md and benchmarks/results.json.

    .venv/bin/python benchmarks/run_all.py            # the full suite (`make bench`)
    .venv/bin/python benchmarks/run_all.py --quick    # a smoke run of every phase (< 2 min)

Every figure is a ratio of two timings taken side by side in this run, repeated `--reps`
times and reported as median, min and max (see README.md). Phases, in order:
corpus -> start-up -> [one Ray session: efficiency, writer, alternatives] -> memory
(fresh processes) -> scaling (a fresh process per size) -> training (its own script).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.contenders import ContenderRun  # noqa: E402
from benchmarks.cpu import CpuMeter, cpu_columns  # noqa: E402
from benchmarks.results import Figure, write_results  # noqa: E402
from benchmarks.workload import STORE_ENV, remove_store  # noqa: E402

log = logging.getLogger("bench")
# results.json key and results.md title of each contender that runs in its own venv.
CONTENDER_KEYS = {"daft": "vs_daft", "data-juicer": "vs_data_juicer"}
CONTENDER_TITLES = {
    "daft": "Daft (native runner, class UDF) / ours, wall",
    "data-juicer": "Data-Juicer (closest ops, DefaultExecutor) / ours, wall",
}
# A tiny corpus that warms Ray workers' imports before anything is timed.
WARM_RECORDS = 16
# The naive Ray Data baseline's in-flight blocks: enough for every CPU to have a few
# batches of media in flight.
RAY_DATA_STORE_BUDGET = 512 * 1024 * 1024
RAY_DATA_STORE_PER_CPU = 128 * 1024 * 1024
PHASES = (
    "startup",
    "efficiency",
    "writer",
    "alternatives",
    "contenders",
    "rerun",
    "quality_overhead",
    "memory",
    "scaling",
    "training",
)


@dataclass
class Settings:
    """Sizes of each phase; `--quick` shrinks them all."""

    records: int = 2000  # efficiency corpus (the "realistic corpus")
    n1_records: int = 1000  # the N=1 efficiency runs on this prefix of the records
    alt_records: int = 400  # subset for the end-to-end comparisons with datasets / Ray Data
    rerun_records: int = 400  # the full run of the rerun figures (+5% for the incremental one)
    memory_base: int = 200  # the 1x of the memory figure; 10x is memory_base * memory_scale
    memory_scale: int = 10
    # The scaling phase: whole jobs over multimodal corpora of these sizes, and text-only.
    scaling_sizes: tuple[int, ...] = (500, 2000, 8000)
    scaling_text: int = 100_000
    reps: int = 3
    quick: bool = False
    phases: tuple[str, ...] = PHASES
    train_args: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, help="efficiency corpus size (default 2000)")
    parser.add_argument(
        "--alt-records", type=int, help="records for the alternatives (default 400)"
    )
    parser.add_argument(
        "--memory-base", type=int, help="the 1x corpus of the memory figure (default 200)"
    )
    parser.add_argument(
        "--rerun-records", type=int, help="records of the rerun figures' full run (default 400)"
    )
    parser.add_argument(
        "--n1-records", type=int, help="records of the N=1 efficiency (default 1000)"
    )
    parser.add_argument(
        "--scaling-sizes",
        help="comma-separated multimodal sizes of the scaling phase (default 500,2000,8000)",
    )
    parser.add_argument(
        "--scaling-text", type=int, help="text-only records of the scaling phase (default 100000)"
    )
    parser.add_argument("--reps", type=int, help="repetitions per figure (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run of every phase"
    )
    parser.add_argument("--only", help=f"comma-separated phases to run, from {','.join(PHASES)}")
    args = parser.parse_args(argv)
    s = Settings()
    if args.quick:
        s = Settings(
            records=40,
            n1_records=20,
            alt_records=24,
            rerun_records=40,
            memory_base=8,
            scaling_sizes=(8, 16),
            scaling_text=200,
            reps=1,
            quick=True,
            train_args=["--quick"],
        )
    for name in ("records", "n1_records", "alt_records", "rerun_records", "memory_base", "reps"):
        value = getattr(args, name)
        if value is not None:
            setattr(s, name, value)
    if args.scaling_sizes:
        s.scaling_sizes = tuple(int(n) for n in args.scaling_sizes.split(",") if n.strip())
    if args.scaling_text is not None:
        s.scaling_text = args.scaling_text
    if args.only:
        wanted = tuple(p.strip() for p in args.only.split(",") if p.strip())
        unknown = set(wanted) - set(PHASES)
        if unknown:
            parser.error(f"unknown phase(s) {sorted(unknown)}; choose from {PHASES}")
        s.phases = wanted
    return s


def configure_ray_data() -> None:
    """Set Ray Data's options for the naive Ray Data baseline (the data job itself runs
    plain Ray tasks): no console output, no resource reservation, a fixed object-store
    budget."""
    from ray.data import DataContext

    from pipeline.execution.cluster import cluster_cpus

    ctx = DataContext.get_current()
    # With reservation on, only ~1.2 batches ran at once on 2 CPUs.
    ctx.op_resource_reservation_enabled = False
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # Ray Data would otherwise let finished blocks pile up to a share of the whole object
    # store (GBs) before backpressure starts; a fixed budget keeps memory flat in corpus size.
    from ray.data import ExecutionResources

    ctx.execution_options.resource_limits = ExecutionResources(
        object_store_memory=max(RAY_DATA_STORE_BUDGET, cluster_cpus() * RAY_DATA_STORE_PER_CPU)
    )
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    # Ray Data logs every dataset's start and finish to the console at INFO; keep those in
    # its session log file only, and let warnings through.
    from ray.data._internal.logging import SessionFileHandler

    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, SessionFileHandler):
            handler.setLevel(logging.WARNING)


def cores() -> int:
    """Return the CPUs this process may use (what an embedded Ray cluster will offer)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Suite:
    """Runs the phases of one benchmark run and collects their figures and notes."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.work = BENCH_DIR / "_work"
        self.run_dir = self.work / f"run-{os.getpid()}"
        self.figures: dict[str, Figure] = {}
        self.meta: dict[str, Any] = {
            "cores": cores(),
            "records": settings.records,
            "reps": settings.reps,
            "store": os.environ.get(STORE_ENV) or "local disk (benchmarks/_work)",
        }
        self.sections: list[tuple[str, str]] = []
        self.details: dict[str, Any] = {}
        self._kept_stage_run = None
        self._bench = None
        self._scaling_section = ""

    def figure(self, key: str, title: str, **kwargs: Any) -> Figure:
        fig = self.figures.setdefault(key, Figure(key, title, **kwargs))
        return fig

    # -- phases --------------------------------------------------------------------------
    def corpus(self) -> None:
        from benchmarks.corpus import build_corpus

        self.rerun_source = rerun_source_records(self.s.rerun_records)
        biggest = max(
            self.s.records,
            self.s.alt_records,
            self.s.memory_base * self.s.memory_scale,
            self.rerun_source,
        )
        sizes = {WARM_RECORDS, biggest, self.s.records, self.s.alt_records, self.s.memory_base}
        sizes |= {self.s.memory_base * self.s.memory_scale, self.rerun_source}
        started = time.perf_counter()
        self.corpora = {n: build_corpus(n) for n in sorted(sizes)}
        self.details["corpus"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "root": str(self.corpora[biggest].root),
            "records_per_file": sorted(self.corpora),
        }
        log.info("corpus ready in %.1f s", self.details["corpus"]["seconds"])

    def startup(self) -> None:
        from benchmarks.startup import help_vs_python

        ratios, helps, bares = help_vs_python(reps=max(5, self.s.reps))
        fig = self.figure(
            "help_vs_python", "`roleforge --help` / `python -c pass` wall time", target=None
        )
        fig.samples = ratios
        fig.note = f"median wall: help {_median(helps):.3f} s, python {_median(bares):.3f} s"
        log.info("start-up: help/python %.2f", fig.median)

    def start_ray(self) -> None:
        from pipeline.execution.cluster import ensure_ray

        # Ray workers import `benchmarks.baselines` for the naive Ray Data chain.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
        )
        started = time.perf_counter()
        ensure_ray()
        self.ray_init_s = time.perf_counter() - started
        configure_ray_data()
        self._ray_startup().samples.append(self.ray_init_s)
        log.info("ray.init: %.1f s", self.ray_init_s)

    def efficiency(self) -> None:
        from benchmarks.baselines import PlainChain, media_records_from_table, plain_loop
        from benchmarks.ours import AugmentStageBench
        from benchmarks.workload import AUGMENT, COPIES, recipe_dict

        n_cpus = self._ray_cpus()
        corpus = self.corpora[self.s.records]
        started = time.perf_counter()
        bench = AugmentStageBench(recipe_dict(corpus.jsonl, self.run_dir / "store-efficiency"))
        prepare_s = time.perf_counter() - started
        # The loop runs on exactly the records the stage gets: those in the validated parts,
        # in part order, so the N=1 subset (a prefix of the parts) is a prefix of the loop.
        subset = bench.prefix(self.s.n1_records)
        n_subset = sum(rows for _, rows in subset)
        records = media_records_from_table(bench.table())
        chain = PlainChain(AUGMENT)
        # Untimed warm-up on a tiny corpus: the workers import albumentations/nlpaug/
        # audiomentations (seconds each) and the plain chain builds its transforms; both are
        # start-up costs, paid once per Ray session / process.
        warm = time.perf_counter()
        warm_bench = AugmentStageBench(
            recipe_dict(self.corpora[WARM_RECORDS].jsonl, self.run_dir / "store-warm")
        )
        warm_bench.discard(warm_bench.run(None))
        warm_bench.close()
        warm_s = time.perf_counter() - warm
        plain_loop(chain, records[:WARM_RECORDS])
        one = self.figure(
            "efficiency_1_core",
            "Augment stage, 1 worker / plain loop on 1 core",
            target=None,  # the issue sets its target at all cores; N=1 is reported
        )
        alln = self.figure(
            "efficiency_all_cores",
            f"Augment stage, {n_cpus} workers / ({n_cpus} x plain loop)",
            target=0.90,
        )
        rows = []
        for rep in range(self.s.reps):
            loop_subset = plain_loop(chain, records[:n_subset])
            loop_rest = plain_loop(chain, records[n_subset:])
            loop = loop_subset.plus(loop_rest)
            run1 = bench.run(1, subset)
            bench.discard(run1)
            runn = bench.run(None)
            one.samples.append(run1.records_per_s / loop_subset.records_per_s)
            alln.samples.append(runn.records_per_s / (n_cpus * loop.records_per_s))
            rows.append(_efficiency_row(loop, loop_subset, run1, runn, n_cpus))
            log.info(
                "efficiency rep %d: loop %.1f rec/s, stage N=1 %.1f rec/s (%.2f), N=%d %.1f rec/s (%.2f)",
                rep + 1,
                loop.records_per_s,
                run1.records_per_s,
                one.samples[-1],
                n_cpus,
                runn.records_per_s,
                alln.samples[-1],
            )
            if self._kept_stage_run is not None:
                bench.discard(self._kept_stage_run)
            self._kept_stage_run = runn  # the writer phase writes the last run's output
        self._bench = bench
        del records
        self.details["efficiency"] = {
            "records": bench.records,
            "n1_records": n_subset,
            "ray_cpus": n_cpus,
            "prepare_seconds (ingest, untimed)": round(prepare_s, 1),
            "warm_up_seconds (untimed)": round(warm_s, 1),
            "reps": rows,
        }
        one.note = (
            f"first {n_subset} of the records (both sides); the driver receives and writes "
            "results on another core, so N=1 may exceed 1"
        )
        alln.note = f"{bench.records} records x {COPIES} copies; loop and stage alternate in each repetition"

    def writer(self) -> None:
        from benchmarks.writer import writer_vs_pyarrow

        if self._kept_stage_run is None:
            log.warning("writer: needs the efficiency phase's output; skipped")
            return
        run = self._kept_stage_run
        ratios, detail = writer_vs_pyarrow(
            run.parts, run.index, self.run_dir / "writer", self.s.reps
        )
        fig = self.figure(
            "writer_vs_pyarrow",
            "Shard writer MB/s / bare pyarrow write MB/s (same format)",
            target=0.8,
        )
        fig.samples = ratios
        fig.note = (
            f"{detail['mb']:.0f} MB; ours {detail['ours_mb_s']:.0f} MB/s, bare+fsync "
            f"{detail['bare_mb_s']:.0f} MB/s, bare without fsync {detail['bare_nofsync_mb_s']:.0f} MB/s"
        )
        self.details["writer"] = detail
        log.info("writer: %s", fig.note)
        self._bench.discard(run)
        self._kept_stage_run = None

    def alternatives(self) -> None:
        """Whole jobs side by side on one corpus: ours, then (phase `alternatives`) the naive
        Ray Data chain and `datasets`, and (phase `contenders`) Daft and Data-Juicer."""
        from benchmarks.baselines import Encoders
        from benchmarks.ours import run_job
        from benchmarks.workload import AUGMENT, recipe_dict

        corpus = self.corpora[self.s.alt_records]
        n_cpus = self._ray_cpus()
        encoders = Encoders()
        out = self.run_dir / "alternatives"
        baselines = "alternatives" in self.s.phases
        contenders = self._ready_contenders() if "contenders" in self.s.phases else []
        # Untimed: each contender's first call on a tiny corpus (imports, worker start);
        # Daft and Data-Juicer warm up inside their own process, before their timed run.
        warm = self.corpora[WARM_RECORDS]
        # On Ray, though it is small (a job this size runs in its own process otherwise),
        # so the Ray workers the timed run gets have imported the op libraries, as every
        # contender's process has before its timed run. Without it a run without the
        # efficiency phase before it (`--only alternatives`) timed those imports for ours.
        warm_recipe = recipe_dict(warm.jsonl, out / "warm-store")
        warm_recipe["execution"] = {"in_process_records": 0}
        run_job(warm_recipe)
        remove_store(out / "warm-store")
        if baselines:
            self._naive(warm.jsonl, out / "warm-ray", AUGMENT, encoders)
            # `datasets` warms up in its own process, before its timed run (`_datasets`).
            vs_ds = self.figure(
                "vs_datasets_map",
                f"`datasets` map(num_proc={n_cpus})+save_to_disk / ours, wall",
                target=1.3,
            )
            vs_ray = self.figure(
                "vs_naive_ray_data", "naive Ray Data chain / ours, wall", target=1.5
            )
        driver = self.figure(
            "driver_ms_per_record",
            "Driver CPU ms per input record, whole job",
            target=0.05,
            higher_is_better=False,
            unit="ms",
        )
        rows = []
        for rep in range(self.s.reps):
            # CPU seconds beside every wall time: each job's own, and what the rest of the
            # machine used meanwhile ("others"). The jobs run one after another, so a wall
            # ratio compares moments of different load; the CPU columns show when that
            # happened (issue 25: benchmarks/README.md, Alternatives).
            cpu = CpuMeter()
            ours_s, _, stages = run_job(recipe_dict(corpus.jsonl, out / f"store-{rep}"))
            ours_cpu = cpu.read()
            driver.samples.append(1000 * ours_cpu.get("driver", 0.0) / corpus.records)
            row: dict[str, Any] = {"ours_s": round(ours_s, 2)}
            cpu_cols = cpu.columns("ours", ours_cpu)
            if baselines:
                cpu = CpuMeter()
                naive_s = self._naive(corpus.jsonl, out / f"ray-{rep}", AUGMENT, encoders)
                cpu_cols |= cpu.columns("naive_ray", cpu.read())
                ds = self._datasets(corpus, warm, out / f"ds-{rep}", n_cpus)
                cpu_cols |= run_cpu_columns("datasets", ds)
                vs_ds.samples.append(ds.seconds / ours_s)
                vs_ray.samples.append(naive_s / ours_s)
                row |= {"naive_ray_s": round(naive_s, 2), "datasets_s": round(ds.seconds, 2)}
            for name in contenders:
                run = self._contender(name, corpus, warm, out / f"{name}-{rep}", n_cpus)
                if run is not None:
                    self.figures[CONTENDER_KEYS[name]].samples.append(run.seconds / ours_s)
                    row[f"{name}_s"] = round(run.seconds, 2)
                    cpu_cols |= run_cpu_columns(name, run)
            row["ours driver CPU ms/rec"] = round(driver.samples[-1], 2)
            rows.append(row | {f"ours {k}": v for k, v in stages.items()} | cpu_cols)
            log.info("alternatives rep %d: %s", rep + 1, row)
            remove_store(out / f"store-{rep}")
            for name in ("ray", "ds", *contenders):
                shutil.rmtree(out / f"{name}-{rep}", ignore_errors=True)
        self.details["alternatives"] = {"records": corpus.records, "reps": rows}
        note = f"{corpus.records}-record subset, end to end (ours: ingest to commit)"
        if baselines:
            vs_ds.note = vs_ray.note = note
        driver.note = (
            f"CPU of the driver process (all its threads) during our whole job on {corpus.records} "
            "records / records; the augment stage alone: `driver ms/rec` in the efficiency table"
        )
        for name in contenders:
            fig = self.figures[CONTENDER_KEYS[name]]
            if fig.unmeasured is None:
                fig.note = f"{note}; {self.details.get(name, {}).get('engine', name)}"

    def _ready_contenders(self) -> list[str]:
        """Return the contenders whose venv is ready (building it once, untimed); record why
        for the others."""
        from benchmarks.contenders import ContenderUnavailable, ensure_venv

        ready = []
        for name, key in CONTENDER_KEYS.items():
            self.figure(key, CONTENDER_TITLES[name], target=None)
            try:
                ensure_venv(name)
            except (ContenderUnavailable, OSError, subprocess.SubprocessError) as exc:
                self._unmeasured(key, f"cannot install: {exc}")
                continue
            ready.append(name)
        return ready

    def _contender(
        self, name: str, corpus: Any, warm: Any, folder: Path, n_cpus: int
    ) -> ContenderRun | None:
        """Return one contender run, or None (and why) when it failed."""
        from benchmarks.contenders import ContenderUnavailable, JobSpec, run_contender
        from benchmarks.workload import AUGMENT

        key = CONTENDER_KEYS[name]
        if self.figures[key].unmeasured is not None:
            return None
        spec = JobSpec(
            jsonl=str(corpus.jsonl),
            # Data-Juicer starts fresh worker pools (and imports torch there) for every op,
            # so a warm-up run in its driver saves it little; quick mode skips that one.
            warm_jsonl=None if self.s.quick and name == "data-juicer" else str(warm.jsonl),
            out=str(folder),
            augment=AUGMENT,
            cpus=n_cpus,
        )
        try:
            run = run_contender(name, spec, folder)
        except (ContenderUnavailable, OSError, subprocess.SubprocessError) as exc:
            self._unmeasured(key, f"cannot run: {exc}")
            return None
        expected = corpus.records * (1 + int(AUGMENT["copies"]))
        if run.rows != expected:
            self._unmeasured(key, f"wrote {run.rows} rows, expected {expected}; not comparable")
            return None
        self.details.setdefault(name, {"engine": run.engine, "warm_seconds": []})
        self.details[name]["warm_seconds"].append(round(run.warm_seconds, 2))
        return run

    def _unmeasured(self, key: str, reason: str) -> None:
        fig = self.figures[key]
        fig.samples = []
        fig.unmeasured = reason
        log.warning("%s not measured: %s", key, reason)

    def _datasets(self, corpus: Any, warm: Any, folder: Path, n_cpus: int) -> ContenderRun:
        """Return the `datasets` baseline's timed run (wall and CPU seconds), in a process of
        its own (`benchmarks/datasets_job.py`): `map(num_proc)` forks its pool from the
        calling process, and a fork of this one, which runs Ray, can break Ray's
        connections (benchmarks/README.md, "Ray and fork")."""
        from benchmarks.contenders import JobSpec, run_job_module
        from benchmarks.workload import AUGMENT

        spec = JobSpec(
            jsonl=str(corpus.jsonl),
            warm_jsonl=str(warm.jsonl),
            out=str(folder),
            augment=AUGMENT,
            cpus=n_cpus,
        )
        run = run_job_module(
            "datasets", "benchmarks.datasets_job", sys.executable, spec, folder, 1800
        )
        expected = corpus.records * (1 + int(AUGMENT["copies"]))
        if run.rows != expected:
            raise RuntimeError(f"datasets wrote {run.rows} rows, expected {expected}")
        return run

    def _naive(self, jsonl: Path, out: Path, augment: dict, encoders: Any) -> float:
        """Run the naive Ray chain under Ray Data's stock settings, as a new user would have them."""
        from ray.data import DataContext

        from benchmarks.baselines import naive_ray_job

        ctx = DataContext.get_current()
        saved = ctx.op_resource_reservation_enabled
        ctx.op_resource_reservation_enabled = True  # Ray Data's shipped default
        try:
            return naive_ray_job(jsonl, out, augment, encoders)
        finally:
            ctx.op_resource_reservation_enabled = saved

    def rerun(self) -> None:
        """Time `roleforge run` (a fresh process each) full, unchanged and with 5% more records."""
        from benchmarks.rerun import rerun_rep
        from benchmarks.workload import recipe_dict

        n = self.s.rerun_records
        unchanged = self.figure(
            "unchanged_rerun_ratio",
            "An unchanged rerun of `roleforge run` / the full run, wall",
            target=0.05,
            higher_is_better=False,
        )
        incremental = self.figure(
            "incremental_5pct_ratio",
            "A rerun after adding 5% records / the full run, wall",
            target=0.15,
            higher_is_better=False,
        )
        source = self.corpora[self.rerun_source].jsonl
        reps = []
        for rep in range(self.s.reps):
            store = self.run_dir / f"store-rerun-{rep}"
            try:
                result = rerun_rep(source, n, self.run_dir / f"rerun-{rep}", recipe_dict, store)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                for fig in (unchanged, incremental):
                    self._unmeasured(fig.key, f"`roleforge run` failed: {str(exc)[:600]}")
                return
            finally:
                remove_store(store)
            unchanged.samples.append(result.unchanged_ratio)
            incremental.samples.append(result.incremental_ratio)
            reps.append(result)
            log.info("rerun rep %d: %s", rep + 1, result.to_row())
        self.details["rerun"] = {
            "records": n,
            "added": reps[0].added,
            "reps": [r.to_row() for r in reps],
        }
        counted = [r for r in reps if r.unchanged.reused is not None]
        counts = (
            "; reused/computed (unchanged, incremental): "
            + ", ".join(
                f"{r.unchanged.reused}/{r.unchanged.computed} and "
                f"{r.incremental.reused}/{r.incremental.computed}"
                for r in counted
            )
            if counted
            else "; the run's JSON has no `reused`/`computed` yet (no per-record cache)"
        )
        base = (
            f"`python -m pipeline.cli run --json`, a fresh process each (start-up included), "
            f"{n} records then +{reps[0].added} into one store"
        )
        unchanged.note = incremental.note = base + counts

    def stop_ray(self) -> None:
        import ray

        if self._bench is not None:
            self._bench.close()
        if ray.is_initialized():
            ray.shutdown()

    def quality_overhead(self) -> None:
        """Time the record pass with the default `quality:` / without, same records
        (benchmarks/quality_bench.py: record_pass_overhead)."""
        from benchmarks.corpus import build_corpus
        from benchmarks.quality_bench import record_pass_overhead

        fig = self.figure(
            "quality_overhead",
            "The record pass with the default quality settings / without, same records, wall",
            target=1.10,
            higher_is_better=False,
        )
        n = min(self.s.rerun_records, 200)
        source = build_corpus(n)
        rows = []
        for rep in range(self.s.reps):
            row = record_pass_overhead(source.jsonl, self.run_dir / f"quality-{rep}", reps=2)
            fig.samples.append(row["ratio"])
            rows.append(row)
        self.details["quality_overhead"] = rows

    def memory(self) -> None:
        from benchmarks.memory_job import measure_jobs_memory
        from benchmarks.workload import recipe_dict

        base, big = self.s.memory_base, self.s.memory_base * self.s.memory_scale
        fig = self.figure(
            "memory_ratio_10x",
            f"Peak RSS of the process tree, {big} / {base} records, each job in a fresh process",
            target=1.2,
            higher_is_better=False,
        )
        # Both jobs in one process, 1x first, as this figure was measured until 2026-12-07:
        # the 10x job's driver then still holds what the 1x job's in-process record pass
        # imported (the op libraries: driver 317 MB against 238-245 MB fresh), which says
        # more about the order of the two jobs than about growth with the records.
        shared = self.figure(
            "memory_ratio_10x_one_process",
            f"Peak RSS of the process tree, {big} / {base} records, both jobs in one process",
            target=None,  # reported: one sample, beside the figure above
            higher_is_better=False,
        )
        rows = []
        for rep in range(self.s.reps):
            # Each size as `roleforge run` runs it: a fresh process that starts its own Ray.
            peaks = []
            for n in (base, big):
                store = self.run_dir / f"store-memory-{n}-{rep}"
                [peak] = measure_jobs_memory(
                    [recipe_dict(self.corpora[n].jsonl, store)],
                    self.run_dir / f"memory-{n}-{rep}",
                )
                remove_store(store)
                peaks.append(peak)
            small, large = peaks
            self._ray_startup().samples.append(small["ray_init_s"])
            fig.samples.append(large["peak_rss_mb"] / small["peak_rss_mb"])
            rows.append({str(base): small, str(big): large})
            log.info(
                "memory rep %d: %d rec %.0f MB, %d rec %.0f MB (ratio %.2f; anon %.2f, PSS %.2f)",
                rep + 1,
                base,
                small["peak_rss_mb"],
                big,
                large["peak_rss_mb"],
                fig.samples[-1],
                large["peak_anon_mb"] / small["peak_anon_mb"],
                large["peak_pss_mb"] / small["peak_pss_mb"],
            )
        stores = [self.run_dir / f"store-memory-one-{n}" for n in (base, big)]
        one = measure_jobs_memory(
            [
                recipe_dict(self.corpora[n].jsonl, st)
                for n, st in zip((base, big), stores, strict=True)
            ],
            self.run_dir / "memory-one-process",
        )
        for store in stores:
            remove_store(store)
        shared.samples.append(one[1]["peak_rss_mb"] / one[0]["peak_rss_mb"])
        shared.note = (
            f"{one[0]['peak_rss_mb']:.0f} -> {one[1]['peak_rss_mb']:.0f} MB; the 10x job's "
            f"driver {one[1]['at_peak_mb'].get('driver', {}).get('rss', 0):.0f} MB"
        )

        def ratio(kind: str) -> float:
            return _median([r[str(big)][kind] / r[str(base)][kind] for r in rows])

        self.details["memory"] = {
            "base": base,
            "big": big,
            "reps": rows,
            "one_process": {str(base): one[0], str(big): one[1]},
            "anon_ratio_median": ratio("peak_anon_mb"),
            "pss_ratio_median": ratio("peak_pss_mb"),
        }
        fig.note = (
            f"a fresh process + Ray per job ({base}, then {big} records) per repetition; peak RSS "
            f"{_median([r[str(base)]['peak_rss_mb'] for r in rows]):.0f} -> "
            f"{_median([r[str(big)]['peak_rss_mb'] for r in rows]):.0f} MB; anonymous RSS ratio "
            f"{ratio('peak_anon_mb'):.2f}, PSS ratio {ratio('peak_pss_mb'):.2f}"
        )

    def scaling(self) -> None:
        """One whole job per size in a fresh process: wall, records/s, driver CPU per record
        and driver peak RSS, as multimodal corpora grow and on a large text-only one."""
        from benchmarks.corpus import build_corpus, build_text_corpus
        from benchmarks.scaling import markdown, measure_job, plot
        from benchmarks.workload import recipe_dict

        jobs = [("multimodal", n, build_corpus(n)) for n in self.s.scaling_sizes]
        if self.s.scaling_text:
            jobs.append(("text", self.s.scaling_text, build_text_corpus(self.s.scaling_text)))
        points = []
        for kind, n, corpus in jobs:
            store = self.run_dir / f"store-scaling-{kind}-{n}"
            try:
                recipe = recipe_dict(corpus.jsonl, store)
                points.append(measure_job(kind, n, recipe, self.run_dir / f"scaling-{kind}-{n}"))
            finally:
                remove_store(store)
            log.info("scaling: %s", points[-1].to_row())
        largest = max(points, key=lambda p: p.records)
        fig = self.figure(
            "driver_cpu_per_record_largest",
            f"Driver CPU per record (ms), whole job, {largest.records:,} {largest.kind} records",
            target=0.05,
            higher_is_better=False,
        )
        fig.samples.append(largest.driver_cpu_ms_per_record)
        png = BENCH_DIR / "scaling.png"
        plot(points, png)
        self.details["scaling"] = [p.to_row() for p in points]
        note = (
            "One `DataJob.run` per size (the benchmark recipe: everything train, two augmented "
            "copies), each in a fresh process that starts Ray first; wall and CPU cover the job "
            "only; driver = that process (Ray's workers and daemons not counted), its peak RSS "
            "is VmHWM reset after Ray's start-up (`ru_maxrss` would be the bench's own peak, "
            "inherited at exec); one repetition."
        )
        self._scaling_section = markdown(points, png.name, note)

    def training(self) -> None:
        script = BENCH_DIR / "train_throughput.py"
        trainer = self.figure(
            "trainer_vs_hf_trainer",
            "Our trainer tokens/s / HF `Trainer` tokens/s",
            target=0.95,  # the trainer issue's own target, printed by train_throughput.py
        )
        wait = self.figure(
            "data_wait_share", "Share of our step time spent waiting for data", target=None
        )
        if not script.exists():
            trainer.note = wait.note = "benchmarks/train_throughput.py is missing; not measured"
            log.warning("training: %s", trainer.note)
            return
        out = self.run_dir / "train.json"
        args = self.s.train_args or ["--reps", str(self.s.reps)]
        cmd = [sys.executable, str(script), "--json", str(out), *args]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0 or not out.exists():
            trainer.note = wait.note = (
                f"train_throughput.py failed (exit {done.returncode}); see details"
            )
            self.details["training"] = {"exit": done.returncode, "stderr_tail": done.stderr[-2000:]}
            log.warning("training: %s\n%s", trainer.note, done.stderr[-2000:])
            return
        data = json.loads(out.read_text())
        self.details["training"] = {"seconds": round(seconds, 1), "report": data}
        trainer.samples = _samples(
            data, "trainer_vs_hf_trainer", ("ratio", "tokens_per_s_ratio", "vs_hf_trainer")
        )
        wait.samples = _samples(data, "data_wait_share", ("data_wait_share", "wait_share"))
        trainer.note = wait.note = f"from benchmarks/train_throughput.py ({seconds:.0f} s)"
        log.info("training: ratio %s, data wait share %s", trainer.median, wait.median)

    # -- helpers -------------------------------------------------------------------------
    def _phase(self, name: str, run: Any, always: bool = False) -> bool:
        """Run one phase (when asked for, or `always`); return whether it finished.

        A phase that fails (a Ray start-up that times out on an overloaded machine, a
        contender that crashes) is logged and recorded under `details.failed_phases`, and
        the run goes on, so the other figures still reach the results files."""
        if not always and name not in self.s.phases:
            return False
        try:
            run()
        except Exception as exc:  # noqa: BLE001 - any failure of a phase is reported, not fatal
            log.exception("phase %s failed", name)
            self.details.setdefault("failed_phases", {})[name] = f"{type(exc).__name__}: {exc}"[
                -1500:
            ]
            return False
        return True

    def _ray_startup(self) -> Figure:
        """Return the Ray start-up figure: one sample per `ray.init` (this process and each
        memory child)."""
        return self.figure(
            "ray_startup_s", "Ray start-up (`ray.init`), seconds", target=None, unit="s"
        )

    def _ray_cpus(self) -> int:
        from pipeline.execution.cluster import cluster_cpus

        return cluster_cpus()

    def run(self) -> None:
        started = time.perf_counter()
        load_at_start = os.getloadavg()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.corpus()
            self._phase("startup", self.startup)
            ray_phases = [
                p
                for p in ("efficiency", "writer", "alternatives", "contenders")
                if p in self.s.phases
            ]
            if ray_phases and self._phase("ray", self.start_ray, always=True):
                try:
                    if "efficiency" in ray_phases or "writer" in ray_phases:
                        self._phase("efficiency", self.efficiency, always=True)
                    self._phase("writer", self.writer)
                    if "alternatives" in ray_phases or "contenders" in ray_phases:
                        self._phase("alternatives", self.alternatives, always=True)
                finally:
                    self.stop_ray()
            self._phase("rerun", self.rerun)
            self._phase("quality_overhead", self.quality_overhead)
            self._phase("memory", self.memory)
            self._phase("scaling", self.scaling)
            self._phase("training", self.training)
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.meta["wall_s"] = time.perf_counter() - started
        self.meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.meta["machine"] = {
            "platform": platform.platform(),
            "python": platform.python_version(),
        }
        # What else ran shows in the load average: a quiet 2-core machine stays near the
        # benchmark's own 1-2.
        self.meta["load_average"] = {"start": load_at_start, "end": os.getloadavg()}
        self.meta["settings"] = {k: v for k, v in vars(self.s).items() if k != "train_args"}
        self.meta.update(self.details)
        from benchmarks.notes import result_sections

        self.sections = result_sections(self.figures, self.meta)
        if self._scaling_section:
            self.sections.append(("Cost as work grows (scaling)", self._scaling_section))
        write_results(
            self.figures,
            self.meta,
            self.sections,
            BENCH_DIR / "results.md",
            BENCH_DIR / "results.json",
        )
        log.info(
            "wrote %s and %s in %.0f s",
            BENCH_DIR / "results.md",
            BENCH_DIR / "results.json",
            self.meta["wall_s"],
        )


def rerun_source_records(records: int) -> int:
    """Return the corpus size the rerun figures need: the full run plus the 5% added."""
    return records + max(1, round(records * 0.05))


def _efficiency_row(
    loop: Any, loop_subset: Any, run1: Any, runn: Any, n_cpus: int
) -> dict[str, Any]:
    """Return one repetition's absolute numbers and where the all-cores stage spent its CPU.

    `cpu_bound` = loop CPU per record / stage CPU per record (all processes): the efficiency
    a perfect scheduler would reach with this much work per record. `busy` = stage CPU /
    (cores x wall): how much of the machine the stage kept busy; `others` = the share other
    processes on the machine took meanwhile. cpu_bound x busy / (the loop's CPU/wall share)
    is the measured efficiency.
    """
    n = runn.records
    stage_cpu = sum(v for k, v in runn.cpu.items() if k != "others")
    row = {
        "loop rec/s": round(loop.records_per_s, 1),
        "loop rec/s (N=1 subset)": round(loop_subset.records_per_s, 1),
        "N=1 rec/s": round(run1.records_per_s, 1),
        f"N={n_cpus} rec/s": round(runn.records_per_s, 1),
        "loop CPU ms/rec": round(1000 * loop.cpu_seconds / loop.records, 2),
        "stage CPU ms/rec": round(1000 * stage_cpu / n, 2),
    }
    for role in ("workers", "driver", "raylet", "gcs", "ray_system"):
        row[f"{role} ms/rec"] = round(1000 * runn.cpu.get(role, 0.0) / n, 2)
    row["cpu_bound"] = round((loop.cpu_seconds / loop.records) / (stage_cpu / n), 3)
    row["busy"] = round(stage_cpu / (n_cpus * runn.seconds), 3)
    # Share of the machine other processes used during the stage: noise, not our overhead.
    row["others"] = round(runn.cpu.get("others", 0.0) / (n_cpus * runn.seconds), 3)
    return row


def run_cpu_columns(name: str, run: ContenderRun) -> dict[str, float]:
    """Return a results row's two CPU columns of a job run in its own process (none when
    its result has no CPU figures)."""
    if run.cpu_s is None or run.others_cpu_s is None:
        return {}
    return cpu_columns(name, run.cpu_s, run.others_cpu_s)


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values) if values else float("nan")


def _samples(data: dict[str, Any], key: str, aliases: tuple[str, ...]) -> list[float]:
    """Return the repetitions of `key` from train_throughput's JSON (a list, or one number)."""
    for name in (key, *aliases):
        value = data.get(name)
        if isinstance(value, dict):
            value = value.get("samples", value.get("median"))
        if isinstance(value, list):
            return [float(v) for v in value if v is not None]
        if isinstance(value, (int, float)):
            return [float(value)]
    return []


def _with_malloc_settings() -> None:
    """Re-execute this script with the glibc malloc settings when they are missing.

    glibc reads them at process start only. `make bench` exports them (as the Makefile does
    for every target) and the pipeline exports them to its Ray workers; the plain loop and
    the driver's share of every job run in this process, so it needs them too, or the loop
    would lose 30-45% to page faults and flatter every ratio against it (docs/ARCHITECTURE.md, "Execution settings").
    """
    from pipeline.execution.cluster import WORKER_ENV

    wanted = {k: v for k, v in WORKER_ENV.items() if k.startswith("MALLOC_")}
    if any(os.environ.get(k) != v for k, v in wanted.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **wanted})


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        _with_malloc_settings()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    log.setLevel(logging.INFO)
    # A run that stops making progress (seen twice in the alternatives phase, the driver
    # waiting on Ray) can be asked where every thread is: `kill -USR1 <pid>` prints the
    # stacks to stderr and the run goes on.
    if hasattr(faulthandler, "register"):
        import signal

        faulthandler.register(signal.SIGUSR1, all_threads=True)
    Suite(parse_args(argv)).run()


if __name__ == "__main__":
    main()
