"""The `datasets` baseline in a process of its own, with roleforge's venv:

    .venv/bin/python -m benchmarks.datasets_job SPEC.json

`Dataset.map(num_proc=N)` forks its worker pool from the calling process. Forked from the
bench's driver, which runs Ray, the children shared Ray's sockets, and twice the driver's
next Ray task never started (benchmarks/README.md, "Ray and fork"); this process runs no
Ray, so its pool forks nothing of it. As for every contender, an untimed run on the tiny
corpus comes first, and the spec and the result are JSON files (`contenders.py`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def run_once(jsonl: Path, out_dir: Path, augment: dict[str, Any], cpus: int) -> tuple[float, int]:
    """Return the wall seconds of `from_json -> map(num_proc) -> save_to_disk` and the rows
    it saved."""
    import datasets

    from benchmarks.baselines import Encoders, datasets_map_job

    saved = out_dir / "ds"
    seconds = datasets_map_job(jsonl, saved, out_dir / "cache", augment, cpus, Encoders())
    return seconds, datasets.load_from_disk(str(saved)).num_rows


def main(spec_path: str) -> None:
    import json

    import datasets

    from benchmarks.baselines import Encoders, _cached_chain, _encoder_tuple
    from benchmarks.contenders import JobSpec, job_main

    # The chain (and so the op libraries' imports) built once here, untimed, and inherited
    # by the forked pool, as when the map ran in the bench's process after our warm-up job
    # had imported the libraries: else each pool worker imports them inside the timed run.
    spec = JobSpec(**json.loads(Path(spec_path).read_text(encoding="utf-8")))
    _cached_chain(json.dumps(spec.augment), 0, _encoder_tuple(Encoders()))
    job_main(spec_path, run_once, f"datasets {datasets.__version__} map(num_proc)")


if __name__ == "__main__":
    main(sys.argv[1])
