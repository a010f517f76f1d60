"""The prose of results.md: per-figure details from this run, and what profiles showed.

The analysis texts are written by hand from profiles (py-spy, cProfile, Ray's timeline) of
the code they name; a run prints the one of each missed figure next to its own numbers.
"""

from __future__ import annotations

from typing import Any

from benchmarks.results import Figure

# What a profile showed for a figure that misses its target, and what to change. Written
# from profiles taken on the 2-core development machine (py-spy on the driver and on each
# Ray worker, cProfile and py-spy of `record_pass` in-process, Ray's timeline, psutil CPU
# seconds per process); the tables above give this run's own numbers.
ANALYSIS: dict[str, str] = {
    "efficiency_all_cores": """
**Where it goes.** The stage does more CPU work per record than the loop; idle cores come
second. The efficiency table splits it: `cpu_bound` (loop CPU per record / the stage's CPU
per record over all processes) was 0.53-0.58 at 2,000 records in development runs: the loop
needs ~16 ms of CPU per record, the stage ~28 ms (Ray workers ~24.5, driver ~2.3,
raylet/GCS/agents ~1.2). Ray's timeline shows both workers inside map tasks for ~98% of the
stage, and a repetition with the machine to itself (`others` 0.02) had `busy` 0.96 and
efficiency 0.54 = its `cpu_bound`: scheduling is not the problem, CPU per record is. Where
`busy` is low, `others` shows who took the cores.

**In the workers (+6 ms/record against the loop, py-spy of `record_pass` on 200 records,
21.4 vs 15.6 CPU ms/record):**
- `augmenters/record.py: _VariantBuilder.image()/clip()` decode the original media once per
  *copy*, not once per record: with `copies: 2` that is a second 512px JPEG decode
  (+1.5 ms) and a second WAV read (+0.5 ms) per record. Decode once in
  `RecordAugmenter.variants` and hand every copy the same read-only arrays (ops return new
  arrays).
- Per-variant bookkeeping, ~2 ms/record together: a sha256 `record_seed` and a fresh
  `np.random.default_rng` per modality and copy (`RecordAugmenter._rng`), seeding and
  restoring global RNGs per op (`augmenters/randomness.py`), `canonical_json` of every op's
  params, the protect/segment pass around nlpaug (`augmenters/protect.py`).
- `pipeline/stages/augment.py: AugmentStage.process` turns every train row into Python dicts with
  `table.take(...).to_pylist()` (a copy of each original's ~220 KB of media into `bytes`)
  and builds the variants back with `records_to_table`.
- Ray then serialises each pass output into the object store: it holds the *originals*
  again (media included) next to the variants, ~0.5 MB per record, +2-4 ms/record of worker
  CPU against the same code run in-process.

**In the driver (2-3 ms/record, on the same 2 cores):** `DataJob._record_pass` receives every
output block, copies it into the next part files (`PartWriter.write`), computes
`row_nbytes` and converts columns to Python lists for the index. On 2 cores this is CPU the
workers do not get.

**What to change, by expected gain:** (1) the augment pass returns only the variants (and
side rows); the originals stay where the validate pass staged them and the index points
there (`pipeline/execution/passes.py: record_pass`, `pipeline/execution/job.py: DataJob._record_pass`): no
serialisation, object-store traffic or driver copy of the originals; (2) decode once per
record (`augmenters/record.py`); (3) keep original media as Arrow buffers
(`pa.BinaryScalar.as_buffer()`, zero-copy) instead of `to_pylist()` bytes; (4) cheaper
per-variant seeding (one sha256 per record, then derive per-copy/modality streams with
`SeedSequence.spawn`). (1)-(3) remove ~5 ms of the ~11 ms/record gap; the target also
needs (4) and the driver's share gone (see the many-core section: workers writing their
own parts).
""",
    "vs_datasets_map": """
The alternatives do the plain chain's work per record (12-17 ms CPU); ours does the stage's
(22-30 ms, see the efficiency analysis) and two steps they skip: validation decodes every
image and clip to prove it decodes (`validate` column, ~0.8-1.3 s per 400 records) and
the writer sorts rows by id, fsyncs and hashes every shard (`write` column, 0.6-2 s per 400
records); `datasets.save_to_disk` neither sorts, fsyncs nor hashes. Our augment stage alone
took about as long as either whole alternative. The per-record fixes of the efficiency
analysis apply here one for one; for the writer see its own analysis. Not a fix: dropping
validation or the sort, which are the point of a versioned, content-addressed dataset.
At 2,000 records (issue 25), each alone in a fresh process on a quiet machine: ours 16-19 s
wall for 29.3-29.8 CPU-s (ingest 1.6 CPU-s on one core, as one source file is one task; record
pass 21 CPU-s in 11-14 s on both cores; write 5.3 CPU-s in 3 s, four 256 MB shards), and
`datasets` 14.5-17.3 s for 26.2-27.1 CPU-s. No stage grows faster than its records or
bytes (ours' CPU per record: 17 ms at 400, 15 ms at 2,000). A 29-37 s figure for ours came
from load: on 2 cores a job's wall is close to (own + others' CPU) / 2, so read the `cpu_s`
and `others cpu_s` columns of the alternatives table before the ratio.
""",
    "vs_naive_ray_data": """
The "naive" chain is not naive-slow on Ray 2.60: `read_json` of one jsonl file is split
into several blocks (`ReadPandasJSON->SplitBlocks`), so `map_batches` runs on every core,
and its per-record work is the plain chain's. A 2x lead would need our per-record cost at
about half of the plain chain's, which no amount of scheduling gives; the reachable target
is parity (see the efficiency and writer analyses for the overheads to remove). The
comparison uses Ray Data's stock settings for the naive chain (operator resource
reservation on); with the pipeline's settings it would be faster still.
""",
    "writer_vs_pyarrow": """
Ours does what bare `pq.write_table` does (encode, write) plus: gathers rows in id order
out of the mapped parts (a copy per part, then one into id order), hashes the file
(sha256) and every row (sha256 of each media item, canonical JSON of the rest). The two
hashing passes cover the same bytes in two shapes (file pages, media items), so one
cannot give the other; at ~1 GB/s per pass (hashlib, SHA-NI) they alone cost more than twice
the bare write's CPU. The writer spreads the work over four threads
(`ShardWriter.write_shard`): the main thread encodes straight to the file; one worker
gathers the next batch, one takes the row digests, one hashes the file read back from
the page cache (pyarrow's copies and writers and hashlib release the GIL). Per 984 MB
(6,000 rows of 160 KB, loaded 2-core machine, thread CPU): main ~2 s, gather ~2 s, each
hash ~1 s; before, the main thread gathered and encoded (~4-4.5 s) and pages went
through a Python sink (a bytes copy of every page). On two cores the wall is then bound
by the total CPU (~3x the bare write's), not by one thread. What is left: the two gather
copies and the zeroed pages the allocator hands them (mimalloc purges freed pages after
10 ms; `MIMALLOC_PURGE_DELAY=-1` cut the gather's CPU ~25%, a process-wide setting), and
the record pass's parts themselves (issue 25 item 1).
""",
    "memory_ratio_10x": """
Where the peak is (the memory table's per-role line, sampled with the tree's peak): both
peaks fall while shards are written. At 1x the record pass runs in the driver (500 records
or fewer, `execution.in_process_records`) and only the one shard's task runs on Ray, in a
fresh worker; at 10x the record pass and the shards run in two Ray workers that have
imported the op libraries. Ray's daemons (~700 MB RSS here: GCS, raylet, dashboard, its
agents, the monitors) and the driver (~410-460 MB) are the same at both sizes; the growth
is one more worker holding a shard's batch. A shard task holds its window of rows copied
out of the parts and the batch gathered from them in id order (2 x 64 MB,
`BATCH_MAX_BYTES`); it lets each written batch go before copying the next, and hands its
allocators' free pages back at its start and end. Each MB off a write task's peak takes
2 MB off the 10x and 1 MB off the 1x: reaching 1.2 from here needs a gather that copies
once, straight into the batch, or smaller batches (16 MB: -50 MB per task measured, but
every shard's bytes change).
""",
    "driver_ms_per_record": """
The driver does per-record work in four places (from the profiles behind the efficiency and
writer analyses, and the per-stage seconds in the alternatives table): ingest reads and
assembles every source record (~1 ms/record); every pass streams its output blocks, media
included, through the driver, which copies them into part files and builds index rows
(`DataJob._ingest`, `DataJob._record_pass`: `PartWriter.write`, `row_nbytes`, `to_pylist` of
index columns, ~2-3 ms/record of the augment stage); and the shard writer gathers, writes,
fsyncs and hashes every byte (`ShardWriter.write`). 0.05 ms/record leaves the driver only
small facts per task: tasks that ingest by file/byte range, write their own parts and
shards and return index rows (issue 12 items 1 and 3).
""",
    "unchanged_rerun_ratio": """
Measured, not assumed: an unchanged rerun ran the whole job again and found the content
unchanged only at commit (see the reruns table; `unchanged` in the run's JSON). The issue's
target needs the check before any work: inputs (every media file's sha256), recipe hash and
code version against the latest manifest (issue 12 item 5). What remains then is the
process start-up: interpreter, imports, and `ray.init` unless the check runs before Ray
starts, which at this corpus size is already a large part of 0.05 of a full run.
""",
    "incremental_5pct_ratio": """
Without a per-record cache every record is processed again, so the rerun costs a full run
plus 5%. With the cache (issue 12 item 5) only the added records miss; the rest of the
ratio is the fixed cost of a run (start-up, reading and hashing every input, the cache
index lookup) and writing the new version's shards, which still holds every record.
""",
    "trainer_vs_hf_trainer": """
See `benchmarks/train_throughput.py` (owned by the trainer work) for its own breakdown;
the JSON it wrote is under `details.training` in results.json.
""",
}

RAY_CONFIGURATION = """
**What runs here is the default.** `make bench` measures `pipeline/execution/cluster.py` as shipped:
`ensure_ray()` exports the glibc malloc thresholds to every worker before `ray.init`;
`run_tasks` runs each pass as stateless tasks (no actor
pool to start) over small (part file, offset, length) work items, cut so each CPU gets ~8
tasks (`TASKS_PER_CPU`) of at most 64 items of `batch_size` (16) records; tasks memory-map
their slices, so neither the driver nor the object store holds the corpus. Nothing in the
benchmark overrides it (the N=1 runs set only `execution.stages.augment.concurrency: 1`).

**On a many-core cluster.** Task sizing scales: with C CPUs a corpus of R records is cut
into items of min(16, R/(8C)) records, so every CPU has ~8 tasks to balance stragglers, and
big corpora get tasks of up to 64 x 16 records, long enough to amortise the per-task cost
(unpickling the augmenter and rebuilding its ops: 10-30 ms). Reservation off is right for a
single map operator, which is all a pass has. What does *not* scale is what the driver does
alone:
- every pass streams all its output through the driver, which copies it into part files:
  ~2-3 ms of driver CPU and ~0.5 MB per record. At ~40 records/s per worker core, one
  driver saturates at ~400 records/s, i.e. around 10 worker cores; beyond that more CPUs
  add nothing, and on several nodes the driver's network link carries the whole dataset.
  Workers should write their own part files (to the shared staging folder) and return only
  the small index rows and side messages;
- ingest reads every source file in the driver (~1 ms/record here): serial;
- the shard writer gathers, writes, fsyncs and hashes every shard in the driver: serial,
  ~100-250 MB/s here. One task per shard would scale it.
Until those move into tasks, the 2-core efficiency overstates what 64 cores would reach.
`driver_ms_per_record` puts one number on all of it: the driver's CPU over a whole job
divided by its records. One driver core sustains 1000 / that many records/s; at ~1.3 ms
that is ~770 records/s, i.e. ~12-20 worker cores at this job's 40-60 records/s per core;
the issue's 0.05 ms is what ~200 cores need.

**Task sizing that wins here is wrong there.** `TASKS_PER_CPU` x CPUs work items means that
at 200 CPUs a 2,000-record corpus is cut into ~1,600 tasks of one or two records: each task
then pays the fixed 10-30 ms (unpickle the augmenter, rebuild its ops, map its slice) for
~25 ms of work, and the driver schedules and collects 1,600 results. On many cores the item
size needs a floor in *work* (say >= 0.5-1 s of records per task, ~16-32 records here) and
fewer tasks per CPU, or long-lived workers (an actor per core holding the built ops) so the
fixed cost is paid once per worker, not per task.

**Object store budget.** Ray gives its object store ~30% of a node's memory. Today every
pass output block, media included (~0.5 MB per record), goes through it on its way to the
driver: with C workers producing faster than one driver drains, blocks pile up until the
store spills to disk or back-pressures the workers, and on several nodes every block
crosses the network to the driver's node. 2 cores never get there; 64 would. With workers
writing their own parts (issue 12, item 1) only index rows (~100 bytes per record) and
stats travel, and the budget stops mattering; until then Ray Data's
`DataContext.execution_options.resource_limits.object_store_memory` should cap what one
pass may hold so that spills do not start silently.

These points are reasoned from the per-record costs measured here (driver ms/record in the
efficiency table, `driver_ms_per_record`); no many-core machine was available to measure them.
"""

CONTENDERS = """
Both run in their own venv (built by `benchmarks/contenders.py` from
`benchmarks/requirements-<name>.txt`, once, untimed): daft 0.7 requires pyarrow<26 and
roleforge pins pyarrow 26; py-data-juicer pins dill==0.3.8 / multiprocess==0.70.16 (pip
would downgrade `.venv`'s dill 0.4.1 / multiprocess 0.70.19 under `datasets` 5), adds ~30
packages, and installs missing packages into its environment at run time (below). Each is a fresh process that does one untimed warm-up
run on a 16-record corpus (skipped for Data-Juicer in `--quick`), then one timed run; the
time is the job alone (read to written output), imports excluded, like every contender.

**Daft** (`benchmarks/daft_job.py`, native runner): `read_json` -> native `download()` of
every image and clip -> native `decode_image` (RGB) -> one `@daft.cls(use_process=True,
max_concurrency=cores)` class whose `@daft.method.batch(batch_size=16)` method builds the
plain chain once per process and returns the original plus `copies` variants per record,
made by the same albumentations / audiomentations / nlpaug / soxr calls as the plain loop
(`benchmarks.baselines.PlainChain`), then `explode` and `write_parquet`. Same ops, same
records, same encoders (JPEG q95, FLAC); differences: Daft decodes the JPEG itself (RGB;
cv2 elsewhere), and it neither validates, deduplicates, sorts, fsyncs nor hashes.

**Data-Juicer** (`benchmarks/data_juicer_job.py`, `DefaultExecutor`, `np` = cores, no
cache, no tracer): its closest shipped ops, which differ from ours:
- text: `nlpaug_en_mapper` (keyboard_error_char, aug_num = copies, keep the original): the
  same nlpaug KeyboardAug, but on the whole conversation text, where ours augments user
  turns only and keeps media placeholders intact;
- image: `image_blur_mapper` (Gaussian, p=1) instead of RandomResizedCrop + HorizontalFlip +
  ColorJitter; PIL, and it writes each result as a file;
- audio: `audio_add_gaussian_noise_mapper` (p=1, our amplitudes) instead of Gain +
  AddGaussianNoise + SpeedPerturb; WAV files instead of FLAC bytes;
- it applies the media ops to the original sample too, and exports jsonl with paths to the
  derived files, not media bytes in Parquet/Arrow.
So it does less image work and similar audio work per variant; the figure compares whole
jobs a user would run, not identical ops. Its run-time needs: Data-Juicer's `LazyLoader`
installs missing packages by itself with uv when an op first needs them (unpinned: it put
torch 2.15.0 and ray into the venv here, against the project's torch<=2.14.1 cap), so
`requirements-data-juicer.txt` pins torch 2.14.1 / torchcodec 0.16 / ray 2.60 up front; its
audio loader goes through `datasets.Audio`, which needs torchcodec and the system's FFmpeg
libraries (`apt-get install ffmpeg` on Debian). Each op runs as a `datasets.map(num_proc)`
with a fresh worker pool, and every audio worker imports torch + torchcodec before its first
sample: a fixed cost of tens of seconds per run on this machine that a bigger corpus amortises.
"""


def _rep_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| rep | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for i, row in enumerate(rows, 1):
        lines.append(f"| {i} | " + " | ".join(str(row[k]) for k in keys) + " |")
    return "\n".join(lines)


def result_sections(figures: dict[str, Figure], meta: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (title, markdown) sections for results.md from this run's figures and details."""
    sections: list[tuple[str, str]] = []
    notes = [f"- `{key}`: {fig.note}" for key, fig in figures.items() if fig.note]
    if notes:
        sections.append(("Notes per figure", "\n".join(notes)))
    failed = meta.get("failed_phases") or {}
    if failed:
        sections.append(
            (
                "Phases that failed in this run",
                "\n".join(f"- `{name}`: {why}" for name, why in failed.items()),
            )
        )
    unmeasured = [f"- `{k}`: {f.unmeasured}" for k, f in figures.items() if f.unmeasured]
    if unmeasured:
        sections.append(("Not measured, and why", "\n".join(unmeasured)))
    eff = meta.get("efficiency")
    if eff:
        body = (
            "`cpu_bound`: loop CPU per record / the stage's CPU per record (all processes), "
            "the efficiency a perfect scheduler would reach; `busy`: the stage's CPU / "
            "(cores x wall); `others`: the share of the machine other processes took meanwhile "
            "(noise: a repetition with high `others` understates the stage).\n\n"
        )
        body += (
            f"{eff['records']} records on {eff['ray_cpus']} Ray CPUs. Untimed before the repetitions: "
            f"ingest {eff['prepare_seconds (ingest, untimed)']} s, warm-up "
            f"(worker imports, {16} records) {eff['warm_up_seconds (untimed)']} s.\n\n"
            + _rep_table(eff["reps"])
        )
        sections.append(("Efficiency, per repetition", body))
    alt = meta.get("alternatives")
    if alt:
        sections.append(
            (
                "Alternatives, per repetition (seconds)",
                f"{alt['records']} records.\n\n" + _rep_table(alt["reps"]),
            )
        )
    rerun = meta.get("rerun")
    if rerun:
        sections.append(
            (
                "Reruns of `roleforge run`, per repetition (seconds)",
                f"{rerun['records']} records, then {rerun['added']} added to the same jsonl; "
                "one store per repetition.\n\n" + _rep_table(rerun["reps"]),
            )
        )
    if "vs_daft" in figures or "vs_data_juicer" in figures:
        sections.append(("Contenders: Daft and Data-Juicer", CONTENDERS))
    mem = meta.get("memory")
    if mem:
        rows = []
        for r in mem["reps"]:
            row = {}
            for n in (mem["base"], mem["big"]):
                job = r[str(n)]
                row[f"{n}: RSS MB"] = job["peak_rss_mb"]
                row[f"{n}: anon MB"] = job["peak_anon_mb"]
                row[f"{n}: PSS MB"] = job["peak_pss_mb"]
                row[f"{n}: job s"] = job["job_s"]
            rows.append(row)
        last = mem["reps"][-1]
        where = [
            f"- {n} records"
            + (
                f" (peak {job['peak_at_job_s']:.1f} s into the job; stages {job['stages']})"
                if "peak_at_job_s" in job
                else ""
            )
            + ": "
            + ", ".join(
                f"{role} {v['rss']:.0f} MB"
                + (
                    f" ({v['processes']} processes"
                    + (f", biggest {v['biggest']:.0f}" if "biggest" in v else "")
                    + ")"
                    if v["processes"] > 1
                    else ""
                )
                for role, v in job.get("at_peak_mb", {}).items()
            )
            for n in (mem["base"], mem["big"])
            for job in [last[str(n)]]
        ]
        sections.append(
            (
                "Memory, per repetition",
                _rep_table(rows)
                + "\n\nRSS by role at the peak (last repetition):\n\n"
                + "\n".join(where),
            )
        )
    for key, fig in figures.items():
        if fig.met is False and key in ANALYSIS:
            sections.append((f"Missed: `{key}`", ANALYSIS[key]))
    missed_without = [k for k, f in figures.items() if f.met is False and k not in ANALYSIS]
    if missed_without:
        sections.append(
            (
                "Missed without analysis yet",
                "\n".join(f"- `{k}`: profile it (see README.md)" for k in missed_without),
            )
        )
    sections.append(("Ray configuration, here and on a many-core cluster", RAY_CONFIGURATION))
    return sections
