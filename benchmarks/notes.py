"""The prose of results.md: per-figure details from this run, and what profiles showed.

The analysis texts are written by hand from profiles (py-spy, cProfile, Ray's timeline) of
the code they name; a run prints the one of each missed figure next to its own numbers.
"""

from __future__ import annotations

from typing import Any

from benchmarks.results import Figure

# What a profile showed for a figure that misses its target, and what to change.
ANALYSIS: dict[str, str] = {}

RAY_CONFIGURATION = """
The configuration measured here is the pipeline's default (`pipeline/execution.py`), not a
benchmark setting: `ensure_ray()` exports the malloc thresholds and turns Ray Data's operator
resource reservation off before `ray.init`, and `map_work_items` runs each pass as stateless
tasks over small (part file, offset, length) work items.
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
    eff = meta.get("efficiency")
    if eff:
        body = (
            f"{eff['records']} records on {eff['ray_cpus']} Ray CPUs. Untimed before the repetitions: "
            f"ingest + validate {eff['prepare_seconds (ingest+validate, untimed)']} s, warm-up "
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
    mem = meta.get("memory")
    if mem:
        rows = [
            {f"{n} rec RSS MB": r[str(n)]["peak_rss_mb"] for n in (mem["base"], mem["big"])}
            | {f"{n} rec PSS MB": r[str(n)]["peak_pss_mb"] for n in (mem["base"], mem["big"])}
            | {f"{n} rec job s": r[str(n)]["job_s"] for n in (mem["base"], mem["big"])}
            for r in mem["reps"]
        ]
        sections.append(("Memory, per repetition", _rep_table(rows)))
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
