"""Cost as work grows: one whole data job per corpus size, each in a fresh process.

The child starts Ray and imports the job's code, then runs one recipe and reports the
job's wall time, the driver's CPU time over the job (`time.process_time`: this process
only, not Ray's workers or daemons) and the driver's peak RSS during the job (VmHWM, this
process only, reset after Ray's start-up; its RSS just before the job is reported beside
it). Not `ru_maxrss`: a child inherits its parent's peak there at exec (see
`benchmarks.memory.reset_own_peak_rss`), which reported the bench driver's 2.2 GB at every
size. A fresh process per size, so one size's peak never hides the next one's.

    python -m benchmarks.scaling RESULT.json RECIPE.json    # the child
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ScalingPoint:
    """One size's figures: a whole data job in a fresh process."""

    kind: str  # "multimodal" | "text"
    records: int
    wall_s: float
    records_per_s: float
    driver_cpu_ms_per_record: float
    driver_peak_rss_mb: float
    driver_rss_before_job_mb: float
    rows_written: int

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


def measure_job(
    kind: str, records: int, recipe: dict[str, Any], folder: Path, timeout_s: float = 1800
) -> ScalingPoint:
    """Return the figures of `recipe` run once in a fresh child process."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe_path = folder / "recipe.json"
    recipe_path.write_text(json.dumps(recipe), encoding="utf-8")
    result_path = folder / "result.json"
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    log_path = folder / "stderr.log"
    with log_path.open("w") as log_file:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.scaling", str(result_path), str(recipe_path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": pythonpath},
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            timeout=timeout_s,
            check=False,
        )
    if done.returncode != 0:
        stderr = log_path.read_text(errors="replace")
        raise RuntimeError(f"scaling job failed (exit {done.returncode}):\n{stderr[-3000:]}")
    job = json.loads(result_path.read_text())
    return ScalingPoint(
        kind=kind,
        records=records,
        wall_s=round(job["wall_s"], 2),
        records_per_s=round(records / job["wall_s"], 1),
        driver_cpu_ms_per_record=round(1000 * job["driver_cpu_s"] / records, 3),
        driver_peak_rss_mb=round(job["peak_rss_kb"] / 1024, 1),
        driver_rss_before_job_mb=round(job["rss_before_kb"] / 1024, 1),
        rows_written=job["rows_written"],
    )


def plot(points: list[ScalingPoint], path: Path) -> None:
    """Write a PNG of records/s and driver CPU per record against records, per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (
        ("records_per_s", "records/s"),
        ("driver_cpu_ms_per_record", "driver CPU ms / record"),
        ("driver_peak_rss_mb", "driver peak RSS (MB)"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        for kind, marker in (("multimodal", "o-"), ("text", "s--")):
            mine = sorted((p for p in points if p.kind == kind), key=lambda p: p.records)
            if mine:
                ax.plot(
                    [p.records for p in mine], [getattr(p, key) for p in mine], marker, label=kind
                )
        ax.set_xscale("log")
        if key == "driver_cpu_ms_per_record":
            ax.set_yscale("log")  # from fixed costs at small sizes down to the 0.05 ms target
        ax.set_xlabel("records")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[1].axhline(0.05, color="grey", linewidth=0.8, linestyle=":", label="target 0.05 ms")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(points: list[ScalingPoint], png_name: str | None, note: str) -> str:
    """Return the results.md section: a table of every size and the plot."""
    lines = [
        note,
        "",
        "| kind | records | wall s | records/s | driver CPU ms/record | driver peak RSS MB "
        "| driver RSS before the job MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.kind} | {p.records:,} | {p.wall_s:.1f} | {p.records_per_s:.1f} "
            f"| {p.driver_cpu_ms_per_record:.3f} | {p.driver_peak_rss_mb:.0f} "
            f"| {p.driver_rss_before_job_mb:.0f} |"
        )
    if png_name:
        lines += [
            "",
            f"![records/s, driver CPU per record and driver peak RSS by size]({png_name})",
        ]
    return "\n".join(lines)


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _child(result_path: str, recipe_path: str) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    from benchmarks.memory import own_peak_rss_bytes, reset_own_peak_rss
    from benchmarks.ours import run_job
    from pipeline.execution.cluster import ensure_ray

    ensure_ray()
    # The job's code is imported before the clock, as Ray is started before it: both are
    # the process's start-up (0.5 s of CPU here), which the alternatives phase leaves out
    # too (its untimed warm-up job). What the job itself imports on first use (`datasets`
    # for the card header) stays in the figure.
    import pipeline.execution.job  # noqa: F401

    reset_own_peak_rss()
    rss_before = _rss_kb()
    cpu = time.process_time()
    wall_s, result, _ = run_job(json.loads(Path(recipe_path).read_text()))
    driver_cpu_s = time.process_time() - cpu
    peak_kb = own_peak_rss_bytes() // 1024
    Path(result_path).write_text(
        json.dumps(
            {
                "wall_s": wall_s,
                "driver_cpu_s": driver_cpu_s,
                "peak_rss_kb": peak_kb,
                "rss_before_kb": rss_before,
                "rows_written": sum(result.splits.values()),
            }
        )
    )


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
