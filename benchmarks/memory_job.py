"""Peak memory of one whole data job, run in a fresh process that starts its own Ray.

The parent samples the child's whole process tree (the driver, Ray's GCS and raylet, and
every Ray worker, all descendants of the driver on an embedded cluster) every 50 ms.

    python -m benchmarks.memory_job RECIPE.json RESULT.json   # the child side
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


def measure_job_memory(
    recipe: dict[str, Any], folder: Path, timeout_s: float = 900
) -> dict[str, Any]:
    """Return the peak RSS and PSS (MB) of a child running `recipe`, with its Ray start-up time."""
    from benchmarks.memory import TreeMemorySampler

    folder.mkdir(parents=True, exist_ok=True)
    recipe_path = folder / "recipe.json"
    result_path = folder / "result.json"
    recipe_path.write_text(json.dumps(recipe), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.memory_job", str(recipe_path), str(result_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with TreeMemorySampler(child.pid, interval_s=0.05) as sampler:
        try:
            _, stderr = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            raise
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"memory job failed (exit {child.returncode}):\n{stderr[-3000:]}")
    peak = sampler.peak
    result = json.loads(result_path.read_text())
    return {
        "peak_rss_mb": round(peak.rss_bytes / 1e6, 1),
        "peak_pss_mb": round(peak.pss_bytes / 1e6, 1),
        "processes": peak.processes,
        "samples": peak.samples,
        "wall_s": round(wall, 2),
        **result,
    }


def _child(recipe_path: str, result_path: str) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    from benchmarks.ours import run_job
    from pipeline.execution import ensure_ray

    recipe = json.loads(Path(recipe_path).read_text())
    started = time.perf_counter()
    ensure_ray()
    ray_init_s = time.perf_counter() - started
    job_s, result, stages = run_job(recipe)
    rows = sum(result.splits.values())
    Path(result_path).write_text(
        json.dumps(
            {"ray_init_s": round(ray_init_s, 2), "job_s": round(job_s, 2), "rows_written": rows}
        )
    )


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
