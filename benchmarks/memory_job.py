"""Peak memory of whole data jobs, run in a fresh process that starts its own Ray.

The child runs its recipes one after the other in one Ray session and says when each job
ends; the parent sums the memory of the child's whole process tree (the driver, Ray's GCS
and raylet, its agents and every worker: all descendants of the driver on an embedded
cluster) every 50 ms and keeps one peak per job. The first job's window includes Ray's
start-up; later jobs run with the workers already up, as in any long-lived session.

    python -m benchmarks.memory_job RESULT.json RECIPE.json [RECIPE.json ...]   # the child
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_MARK = "@@bench-job-done"
_START = "@@bench-job-start"


def measure_jobs_memory(
    recipes: list[dict[str, Any]], folder: Path, timeout_s: float = 900
) -> list[dict[str, Any]]:
    """Return, per recipe run in order in one fresh child process, its peak memory (MB) and timings."""
    from benchmarks.memory import TreeMemorySampler

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, recipe in enumerate(recipes):
        path = folder / f"recipe-{i}.json"
        path.write_text(json.dumps(recipe), encoding="utf-8")
        paths.append(str(path))
    result_path = folder / "result.json"
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    log_path = folder / "stderr.log"
    # stderr goes to a file: a pipe nobody reads while we read stdout could fill and block.
    with log_path.open("w") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.memory_job", str(result_path), *paths],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": pythonpath},
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    peaks = []
    started: list[float] = []  # per job, seconds from its window's start to the job's start
    deadline = time.monotonic() + timeout_s
    with TreeMemorySampler(child.pid, interval_s=0.05) as sampler:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith(_START):
                started.append(sampler.seconds_into_window())
            if line.startswith(_MARK):
                peaks.append(sampler.mark())
            if time.monotonic() > deadline:
                child.kill()
                raise TimeoutError(f"memory job ran over {timeout_s} s")
        child.wait()
    if child.returncode != 0 or len(peaks) != len(recipes) or len(started) != len(recipes):
        stderr = log_path.read_text(errors="replace")
        raise RuntimeError(f"memory job failed (exit {child.returncode}):\n{stderr[-3000:]}")
    jobs = json.loads(result_path.read_text())
    return [
        {
            "peak_rss_mb": round(peak.rss_bytes / 1e6, 1),
            "peak_anon_mb": round(peak.anon_bytes / 1e6, 1),
            "peak_pss_mb": round(peak.pss_bytes / 1e6, 1),
            "processes": peak.processes,
            "samples": peak.samples,
            "at_peak_mb": {
                role: {
                    "processes": v["processes"],
                    "rss": round(v["rss"] / 1e6, 1),
                    "anon": round(v["anon"] / 1e6, 1),
                    "biggest": round(v["max_rss"] / 1e6, 1),
                }
                for role, v in sorted(peak.at_peak.items())
            },
            # When the peak came, in seconds after the job started (negative: during Ray's
            # start-up, in the first window); `stages` says what ran then.
            "peak_at_job_s": round(peak.at_s - start, 2),
            **job,
        }
        for peak, start, job in zip(peaks, started, jobs, strict=True)
    ]


def _child(result_path: str, recipe_paths: list[str]) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    from benchmarks.ours import run_job
    from pipeline.execution.cluster import ensure_ray

    started = time.perf_counter()
    ensure_ray()
    ray_init_s = time.perf_counter() - started
    jobs = []
    for path in recipe_paths:
        print(_START, flush=True)
        job_s, result, stages = run_job(json.loads(Path(path).read_text()))
        jobs.append(
            {
                "ray_init_s": round(ray_init_s, 2) if not jobs else None,
                "job_s": round(job_s, 2),
                "rows_written": sum(result.splits.values()),
                "stages": stages,
            }
        )
        print(_MARK, flush=True)
    Path(result_path).write_text(json.dumps(jobs))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2:])
