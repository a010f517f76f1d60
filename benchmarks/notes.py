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
**Where it goes.** Scheduling is not the gap: the efficiency table's `busy` is ~0.97 (both
workers inside map tasks) and `cpu_bound` (loop CPU per record / the stage's CPU per record
over every process) is the efficiency itself. The stage spends ~12 ms of CPU per record
where the loop spends ~9: Ray's processes ~0.5 (driver ~0.14, raylet ~0.1, GCS ~0.06, the
rest ~0.15, the table's columns), the pass itself the rest.

**In the pass** (`python -m benchmarks.record_pass --records 200 --steps`, in-process, no
Ray; one run on 2026-12-07 gave pass 12.42 against loop 10.25 ms per record): the library
work is the loop's (ops applied 4.31 + media encoded 3.42 + text rewritten 0.96 = 8.69,
against the loop's same calls 8.33; validation's decodes 1.63 against the loop's 1.86, and
the pass decodes each item once, for validation and augmentation both). The ~2 ms left are
small pieces, none above 0.4 ms: variants built into Arrow (`records_to_table`, 0.38), the
part write (0.34), per-variant parameter draws (0.36) and generator seeding (0.16, a
sha256 `record_seed` per modality and copy), and ~0.7 spread over Python bookkeeping
(cProfile: ids' sha256, `canonical_json` of each op's params, saving and restoring global
RNG states around the ops, the protect/segment pass around nlpaug, the limits check).

**Sampled instead of traced** (py-spy at 200 Hz over `record_pass --records 200 --reps 3`,
2026-12-07 20:03, pass 11.03 against loop 9.36 ms per record; each sample counted under the
last frame of our code and the library call it made): the libraries take 9.03 ms per record
of the pass, about the loop's whole CPU (9.36): FLAC encoding 2.93, SpeedPerturb's soxr 1.42,
albumentations 1.18, AddGaussianNoise's `randn` 1.12, JPEG decode 0.89 and encode 0.52,
nlpaug 0.71, audio decode 0.18. Ours is the other ~2.0 (18%): seeding and RNG state 0.36,
the part write 0.21, ids and canonical JSON 0.19, the protect/segment pass 0.18, variants to
Arrow 0.15, and 0.93 spread over frames of 7 samples (0.05 ms) or fewer each. cProfile's
tracing inflates the pure-Python library (nlpaug: 4.8 ms per record under it, 0.71 sampled).

**What would close it:** no single change. Seeding once per record and drawing from
derived streams changes every augmented byte (new content ids) for ~0.3 ms; writing the
variants straight into Arrow builders instead of dicts ~0.3; a pass that writes the
published shards itself (issue 25 item 1) removes the part write and the shard task's
read. Together about half the gap.
""",
    "vs_datasets_map": """
The alternatives do the plain chain's work per record; ours does the stage's (see the
efficiency analysis: ~12 against ~9 ms of CPU per record) and steps they skip: validation
decodes every image and clip to prove it decodes (inside `records`), the near-duplicate
and quality stages, and the writer hashes every shard and every row and fsyncs them
(`write` column); `datasets.save_to_disk` neither validates, hashes nor fsyncs. The write
step takes rows from the pass's parts without copying them (rows in part order), so it is
encode + two sha256 passes. A lead of 1.3x over a tool that does less per record needs the
pass's CPU per record below the loop's, which the efficiency analysis says it is not. At
2,000 records see `results-alt-2000.md`. On 2 cores a job's wall is close to
(own + others' CPU) / 2, so read the `cpu_s` and `others cpu_s` columns before the ratio.

**Idle cores are not what is left.** Four warm 400-record jobs on 2026-12-07 (19:34, CPU by
process and stage from psutil, idle from `/proc/stat` every 20 ms) took 3.27-3.75 s and
6.1-6.9 CPU-seconds: Ray workers 5.8-6.4 (ingest 0.32-0.54, record pass 4.85-5.40, write
0.55-0.92), driver 0.21-0.26, Ray's daemons 0.15-0.25. The cores stood idle for 0.28-0.59
CPU-seconds in all: mostly in the write (0.08-0.28: 400 records make one shard, one task,
whose four threads do not fill two cores), then the pass's last task (0.04-0.13) and the
ingest (0.02-0.12). With no idle time at all those jobs would still take 3.07-3.46 s. In
the `make bench` run that followed (19:36), the fastest repetition had ours at 2.88 s on
5.21 CPU-seconds beside `datasets` at 3.12 s: 1.3x needs 2.40 s, which two busy cores reach
only below 4.8 CPU-seconds, ~8% less CPU than that job spent with no core ever idle, ~17%
less at its own share of idle time.
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
Ours does what bare `pq.write_table` does (encode, write) plus a check of the placeholder
invariants and two sha256 passes: the file and every row (each media item's bytes, the
canonical JSON of the rest). The two passes cover the same bytes in two shapes (file pages,
media items), so one cannot give the other; at ~1 GB/s each (hashlib, SHA-NI) they cost
about twice the bare write's CPU. Rows are no longer copied: each shard takes its split's
rows in part order as slices of the memory-mapped parts (`PartSet.runs`/`rows`), and
drops a part batch's pages once it is written. The id-order gather this replaced cost as
much CPU as the encoding: on the 2,000-record pass output (974 MB, 2026-12-07, alternating
old and new) ours went from 276-356 to 454-523 MB/s, 4.1-4.5 to 3.1-3.5 s of CPU, against
the bare write's 0.7-1.2 s. The writer spreads the work over four threads
(`ShardWriter.write_shard`: encode; next batch's slices and checks; row digests; file
hash read back from the page cache), so on two cores its wall is bound by its total CPU,
~3x the bare write's. What is left is the hashing itself: a faster digest (BLAKE3) would
change the manifest format and every content id.

**The bare side moves with the disk.** Its `fsync` waits for the whole file to reach the disk,
so its speed is the disk's flush speed at that moment. Two `make bench` runs on 2026-12-07
with the same writer: ours 577 and 568 MB/s (2.57 and 2.69 CPU-seconds), bare + fsync 499
and 899 MB/s, so the figure read 1.156 at 19:36 and 0.646 at 20:33; bare without fsync
1893 and 1822 MB/s.
""",
    "memory_ratio_10x": """
Each size runs in a fresh process with its own Ray, as `roleforge run` runs it. Where the
peak is (the memory table's per-role line, sampled with the tree's peak): at 1x the
record pass runs in the driver (500 records or fewer, `execution.in_process_records`), which
imports the op libraries (~310 MB at the peak), and only the shards are written on Ray: two
shard tasks since 2026-12-07 (a split gets shards for its share of the CPUs), ~445 MB for
the two workers, which import no op library. At 10x the record pass and the shards run in
both Ray workers, each holding the op libraries (OpenCV, albumentations, SciPy, nlpaug,
soundfile, soxr) and its batch in flight: ~595 MB for the two, while the driver imports
none of them (~255 MB). Ray's daemons (~600 MB RSS here) are the same at both sizes. So
the growth is the op libraries moving from the driver into both workers, not memory that
grows with the records. Before the write was split, one worker stayed at its start-up size
at 1x (1,239-1,354 MB peaks then, ratio 1.169-1.176; 1,333-1,349 MB and 1.078 with it, at
20:33). `memory_ratio_10x_one_process` runs both jobs in one process, 1x first, as this
figure was measured until 2026-12-07: there the 10x job's driver still holds what the 1x
job's in-process pass imported.
""",
    "driver_ms_per_record": """
The issue's target is the driver's CPU per record at the largest size
(`driver_cpu_per_record_largest`, 100,000 text records: met). On 400 records most of the
driver's CPU is fixed per job (planning, starting the tasks, the manifest, the cards, the
quality plan), so per record it looks large; the scaling table shows it falling with the
size. Multimodal corpora keep more per record than text-only ones (0.31 ms at 8,000
multimodal records against 0.026 at 100,000 text records in the 2026-12-07 scaling run);
where that goes in the driver has not been profiled.
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
**What runs here is the default.** `make bench` measures `pipeline/execution/cluster.py` as
shipped: `ensure_ray()` exports the glibc malloc thresholds to every worker before
`ray.init` and names a worker setup hook (the collector's thresholds). Every pass runs as
stateless Ray tasks (`run_tasks`, no actor pool): the ingest reads a big JSON lines file in
byte ranges, a record-pass task memory-maps its slice of the ingested parts and writes its
own part file, a shard task writes, hashes and fsyncs one shard. A task returns index
rows, counts and a quarantine part, so neither the driver nor the object store holds the
corpus. A job whose passes are all under `execution.in_process_records` (500) records runs
them in the driver's process instead. Nothing in the benchmark overrides these: the N=1
runs set only `execution.stages.augment.concurrency: 1`, and the alternatives' untimed
warm-up job sets `in_process_records: 0` so that it warms the Ray workers.

**On a many-core cluster.** Task sizing scales (`slice_rows`): with C CPUs a pass of R
records is cut into tasks of min(`batch_size`, R/(8C)) records, so stragglers even out,
and into bigger ones where that would give a CPU more than 32 tasks (the driver spends
~5 ms on each task's submission and outcome). What stays in the driver is planning
(dedup, split, the near-duplicate plan over the ingest's signatures), folding in the
tasks' outcomes, the manifest and the cards: 0.022 ms of driver CPU per record at 100,000
text records and ~0.3 ms per multimodal record at 8,000 (the scaling table). One driver
core at 0.3 ms per record keeps up with ~3,000 records/s, i.e. ~50-70 worker cores at this
job's 40-60 records/s per core.

**Task sizing that wins here is wrong there.** At 200 CPUs a 2,000-record pass is cut into
~1,000 tasks of two records, each paying its fixed cost (unpickling the pass context,
mapping its slice, writing its part file) for ~50 ms of work; a worker builds the ops
once, not per task (`RecordAugmenter.ops`). On many cores the task size needs a floor in
work (~16-32 records here).

These points are reasoned from the costs measured here; no many-core machine was
available to measure them.
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
