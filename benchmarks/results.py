"""The results files: one figure per row (median, min, max of its repetitions) and a verdict."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The keys of results.json, in the order of the issue; every run writes all of them.
RESULT_KEYS = (
    "efficiency_1_core",
    "efficiency_all_cores",
    "ray_startup_s",
    "vs_datasets_map",
    "vs_naive_ray_data",
    "memory_ratio_10x",
    "writer_vs_pyarrow",
    "trainer_vs_hf_trainer",
    "data_wait_share",
    "help_vs_python",
    "driver_ms_per_record",
    "unchanged_rerun_ratio",
    "incremental_5pct_ratio",
    "vs_daft",
    "vs_data_juicer",
)


@dataclass
class Figure:
    """One benchmark figure: its repetitions and the target it is held to."""

    key: str
    title: str
    samples: list[float] = field(default_factory=list)
    target: float | None = None
    higher_is_better: bool = True
    unit: str = "x"
    note: str = ""
    # Why the figure has no value (a contender that cannot install or run here); None when
    # it was measured or its phase was not asked for.
    unmeasured: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def minimum(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def maximum(self) -> float | None:
        return max(self.samples) if self.samples else None

    @property
    def met(self) -> bool | None:
        """Whether the median meets the target; None when there is no target or no value."""
        if self.target is None or self.median is None:
            return None
        return self.median >= self.target if self.higher_is_better else self.median <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return "(reported)"
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "median": self.median,
            "min": self.minimum,
            "max": self.maximum,
            "samples": self.samples,
            "target": self.target,
            "higher_is_better": self.higher_is_better,
            "met": self.met,
            "unit": self.unit,
            "note": self.note,
            "unmeasured": self.unmeasured,
        }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3g} s"
    if unit == "ms":
        return f"{value:.3g} ms"
    return f"{value:.3f}"


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def _machine_lines(meta: dict[str, Any]) -> list[str]:
    """Return the header's line on the machine and how busy it was (the load average at the
    start and the end of the run: other work on the machine shows there)."""
    machine = meta.get("machine") or {}
    load = meta.get("load_average") or {}
    if not machine and not load:
        return []
    parts = [f"Machine: {machine.get('platform', '?')}, Python {machine.get('python', '?')}"]
    if load:
        parts.append(
            "load average (1, 5, 15 min) at the start "
            + ", ".join(f"{x:.2f}" for x in load.get("start", ()))
            + "; at the end "
            + ", ".join(f"{x:.2f}" for x in load.get("end", ()))
        )
    return ["; ".join(parts) + ".", ""]


def write_results(
    figures: dict[str, Figure],
    meta: dict[str, Any],
    sections: list[tuple[str, str]],
    md_path: Path,
    json_path: Path,
) -> None:
    """Write results.json (medians under the issue's keys, plus details) and results.md."""
    data: dict[str, Any] = {
        key: figures[key].median if key in figures else None for key in RESULT_KEYS
    }
    data["unmeasured"] = {k: f.unmeasured for k, f in figures.items() if f.unmeasured}
    data["cores"] = meta["cores"]
    data["records"] = meta["records"]
    data["details"] = {
        "figures": {key: fig.to_dict() for key, fig in figures.items()},
        **{k: v for k, v in meta.items() if k not in ("cores", "records")},
    }
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")

    lines = [
        "# roleforge benchmark results",
        "",
        f"Run {meta.get('finished', '')} on {meta['cores']} cores, {meta['records']} records "
        f"(the efficiency corpus), {meta.get('reps')} repetitions per figure, "
        f"run wall time {meta.get('wall_s', 0):.0f} s. Every figure is a ratio of two "
        "timings taken side by side in this run; see `benchmarks/README.md` for how to read it.",
        "",
        *_machine_lines(meta),
        "| figure | key | median | min | max | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in [*RESULT_KEYS, *[k for k in figures if k not in RESULT_KEYS]]:
        fig = figures.get(key)
        if fig is None:
            continue
        lines.append(
            f"| {fig.title} | `{key}` | {_fmt(fig.median, fig.unit)} | {_fmt(fig.minimum, fig.unit)} "
            f"| {_fmt(fig.maximum, fig.unit)} | {fig.target_text()} | {_verdict(fig.met)} |"
        )
    lines.append("")
    for title, body in sections:
        lines += [f"## {title}", "", body.strip(), ""]
    md_path.write_text("\n".join(lines), encoding="utf-8")
