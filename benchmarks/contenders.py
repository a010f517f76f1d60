"""Contenders that cannot share roleforge's venv: Daft and Data-Juicer, each in its own.

Each has a requirements file beside this module (`requirements-<name>.txt`, which says why
it needs its own venv). `ensure_venv` builds `benchmarks/_work/venv-<name>` from it with pip
the first time (and again when the file changes: a stamp holds its hash), and `run_contender`
runs the contender's job module there on a JSON spec, in a fresh process that warms up on a
tiny corpus (untimed) and then times one run; the job writes its own timing to a JSON file.
A contender that cannot be installed or run yields a `ContenderUnavailable` whose message is
the reason recorded in results.md (never a made-up figure).
"""

from __future__ import annotations

import ctypes.util
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / "_work"
log = logging.getLogger("bench")

# contender -> the job module its venv runs
JOBS = {"daft": "benchmarks.daft_job", "data-juicer": "benchmarks.data_juicer_job"}


class ContenderUnavailable(RuntimeError):
    """A contender could not be installed or run here; the message says why."""


@dataclass(frozen=True)
class ContenderRun:
    """One timed contender run: wall seconds of the job alone, rows written, what ran, and
    the CPU seconds of the timed run: its own (process and pool) and everyone else's on the
    machine meanwhile (a wall ratio taken under load shows there: issue 25)."""

    seconds: float
    warm_seconds: float
    rows: int
    engine: str
    cpu_s: float | None = None
    others_cpu_s: float | None = None


@dataclass(frozen=True)
class JobSpec:
    """What a contender's job module gets: the corpus, a warm-up corpus (or None), where to
    write, the recipe's `augment:` section, the CPUs to use and where to put its result."""

    jsonl: str
    warm_jsonl: str | None
    out: str
    augment: dict[str, Any]
    cpus: int
    result: str = ""


# (corpus jsonl, output folder, augment section, cpus) -> (wall seconds, rows written)
RunOnce = Callable[[Path, Path, dict[str, Any], int], tuple[float, int]]


def job_main(spec_path: str, run_once: RunOnce, engine: str) -> None:
    """Run a contender's job as `run_contender` expects: the warm-up (when the spec has
    one), then the timed run; write the result JSON the spec names."""
    spec = JobSpec(**json.loads(Path(spec_path).read_text(encoding="utf-8")))
    out = Path(spec.out)
    warm_s = 0.0
    if spec.warm_jsonl:
        warm_s, _ = run_once(Path(spec.warm_jsonl), out / "warm", spec.augment, spec.cpus)
    from benchmarks.cpu import machine_busy, own_cpu

    cpu_before, busy_before = own_cpu(), machine_busy()
    seconds, rows = run_once(Path(spec.jsonl), out / "timed", spec.augment, spec.cpus)
    cpu_s = own_cpu() - cpu_before
    result = {
        "seconds": seconds,
        "warm_seconds": warm_s,
        "rows": rows,
        "engine": engine,
        "cpu_s": cpu_s,
        "others_cpu_s": max(0.0, machine_busy() - busy_before - cpu_s),
    }
    Path(spec.result).write_text(json.dumps(result), encoding="utf-8")


def venv_python(name: str) -> Path:
    return WORK / f"venv-{name}" / "bin" / "python"


def ensure_venv(name: str, timeout_s: float = 1800) -> Path:
    """Return the python of the contender's venv, building or updating it when needed."""
    requirements = BENCH_DIR / f"requirements-{name}.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    venv = WORK / f"venv-{name}"
    stamp = venv / f".stamp-{digest}"
    python = venv_python(name)
    if name == "data-juicer" and ctypes.util.find_library("avcodec") is None:
        raise ContenderUnavailable(
            "Data-Juicer's audio loading needs torchcodec, which needs the system's FFmpeg "
            "libraries (libavcodec); none found (Debian: `apt-get install ffmpeg`)"
        )
    if stamp.exists() and python.exists():
        return python
    failed_stamp = venv / f".failed-{digest}"
    if failed_stamp.exists():
        raise ContenderUnavailable(failed_stamp.read_text(encoding="utf-8"))
    log.info("%s: building %s from %s (once)", name, venv, requirements.name)
    WORK.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "WARNING: Location" not in line]
        reason = f"pip could not install {requirements.name}: " + " ".join(errors[-6:])[-800:]
        failed_stamp.write_text(reason, encoding="utf-8")
        raise ContenderUnavailable(reason)
    for old in venv.glob(".stamp-*"):
        old.unlink()
    stamp.touch()
    return python


def run_contender(name: str, spec: JobSpec, folder: Path, timeout_s: float = 1800) -> ContenderRun:
    """Return the timing of one run of contender `name` on `spec` (its job module's input)."""
    return run_job_module(name, JOBS[name], ensure_venv(name), spec, folder, timeout_s)


def run_job_module(
    name: str, module: str, python: Path | str, spec: JobSpec, folder: Path, timeout_s: float
) -> ContenderRun:
    """Return the timing of one run of job `module` (a `job_main` caller) under `python`,
    in a fresh process: its own imports, and nothing of the bench's Ray session."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = folder / "spec.json", folder / "result.json"
    result_path.unlink(missing_ok=True)
    spec_json = {**asdict(spec), "result": str(result_path)}
    spec_path.write_text(json.dumps(spec_json), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    log_path = folder / "job.log"
    with log_path.open("w") as log_file:
        done = subprocess.run(
            [str(python), "-m", module, str(spec_path)],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
        )
    if done.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-8:]
        raise ContenderUnavailable(
            f"{name} job failed (exit {done.returncode}): " + " | ".join(tail)[-1200:]
        )
    data = json.loads(result_path.read_text())
    return ContenderRun(
        seconds=float(data["seconds"]),
        warm_seconds=float(data["warm_seconds"]),
        rows=int(data["rows"]),
        engine=str(data["engine"]),
        cpu_s=data.get("cpu_s"),
        others_cpu_s=data.get("others_cpu_s"),
    )
