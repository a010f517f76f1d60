"""Reruns of `roleforge run` into one store: unchanged, and after adding 5% more records.

Each repetition, with a fresh store and a fresh copy of the source jsonl (in the corpus
folder, so its relative media paths resolve):

1. full: `python -m pipeline.cli run RECIPE --json` on the first `records` lines;
2. unchanged: the same command again, nothing changed;
3. incremental: 5% more lines appended to the same jsonl (new records, new media), then
   the same command again.

Each is a fresh process (what a user or a scheduler runs), so every wall time includes the
interpreter, imports and whatever Ray start-up the run needs; the ratios are unchanged /
full and incremental / full. The project's modules are byte-compiled first, once and
untimed (`compile_project`), as `pip install` does for an installed roleforge: under
PYTHONDONTWRITEBYTECODE an editable checkout would otherwise compile ~100-200 of its
modules from source in every process, a cost no installed copy pays. Nothing here assumes a cache: without one both ratios are
~1.0. When the run's JSON has top-level `reused` / `computed` (the per-record cache's
counts) they are recorded beside the times.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CliRun:
    """One `roleforge run --json`: wall seconds, the version it published and its reuse counts."""

    seconds: float
    version: int | None
    unchanged: bool | None
    reused: int | None
    computed: int | None


@dataclass(frozen=True)
class RerunRep:
    """One repetition: the full run, the unchanged rerun and the rerun with 5% more records."""

    records: int
    added: int
    full: CliRun
    unchanged: CliRun
    incremental: CliRun

    @property
    def unchanged_ratio(self) -> float:
        return self.unchanged.seconds / self.full.seconds

    @property
    def incremental_ratio(self) -> float:
        return self.incremental.seconds / self.full.seconds

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "full_s": round(self.full.seconds, 2),
            "unchanged_s": round(self.unchanged.seconds, 2),
            "incremental_s": round(self.incremental.seconds, 2),
            "versions": f"{self.full.version}/{self.unchanged.version}/{self.incremental.version}",
        }
        for name in ("unchanged", "incremental"):
            run: CliRun = getattr(self, name)
            row[f"{name} reused/computed"] = (
                f"{run.reused}/{run.computed}" if run.reused is not None else "-"
            )
        return row

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compile_project() -> None:
    """Write the bytecode of the project's packages (`compileall`, which writes it even
    under PYTHONDONTWRITEBYTECODE), as an install from a wheel has it."""
    import compileall

    for package in ("pipeline", "augmenters", "trainers"):
        compileall.compile_dir(str(REPO / package), quiet=1)


def cli_run(recipe_path: Path, log_path: Path, timeout_s: float = 1800) -> CliRun:
    """Return the timing and counts of one `python -m pipeline.cli run RECIPE --json`."""
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(recipe_path), "--json"]
    started = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, env=dict(os.environ)
    )
    seconds = time.perf_counter() - started
    log_path.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise RuntimeError(
            f"`roleforge run` failed (exit {done.returncode}); see {log_path}:\n{done.stderr[-2000:]}"
        )
    result = _last_json_object(done.stdout)
    return CliRun(
        seconds=seconds,
        version=result.get("version"),
        unchanged=result.get("unchanged"),
        reused=result.get("reused"),
        computed=result.get("computed"),
    )


def _last_json_object(stdout: str) -> dict[str, Any]:
    """Return the JSON object `--json` printed (anything logged before it is skipped)."""
    start = stdout.find("{")
    if start < 0:
        raise RuntimeError(f"`roleforge run --json` printed no JSON object: {stdout[-500:]!r}")
    return json.loads(stdout[start:])


def rerun_rep(
    source_jsonl: Path,
    records: int,
    folder: Path,
    recipe_for: Any,
    store: Path,
    added_share: float = 0.05,
) -> RerunRep:
    """Return one repetition of full / unchanged / +5% runs of the CLI into one store.

    `source_jsonl` must hold at least `records * (1 + added_share)` lines; `recipe_for(jsonl,
    store)` returns the recipe dict.
    """
    from benchmarks.workload import write_recipe

    lines = source_jsonl.read_text(encoding="utf-8").splitlines(keepends=True)
    added = max(1, round(records * added_share))
    if len(lines) < records + added:
        raise ValueError(f"{source_jsonl} has {len(lines)} lines; need {records + added}")
    folder.mkdir(parents=True, exist_ok=True)
    compile_project()
    # In the corpus folder so the records' relative media paths resolve; named per run.
    live = source_jsonl.parent / f"rerun-{folder.parent.name}-{folder.name}.jsonl"
    try:
        live.write_text("".join(lines[:records]), encoding="utf-8")
        recipe = write_recipe(folder / "recipe.yaml", recipe_for(live, store))
        full = cli_run(recipe, folder / "full.log")
        unchanged = cli_run(recipe, folder / "unchanged.log")
        with live.open("a", encoding="utf-8") as f:
            f.write("".join(lines[records : records + added]))
        incremental = cli_run(recipe, folder / "incremental.log")
    finally:
        live.unlink(missing_ok=True)
    return RerunRep(records, added, full, unchanged, incremental)


def cleanup(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
