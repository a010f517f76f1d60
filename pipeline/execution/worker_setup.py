"""What every Ray worker of a roleforge session runs once, when it starts, before its first
task (`cluster.ensure_ray` names `worker_setup` as Ray's `worker_process_setup_hook`).

Kept apart from `cluster` so a worker's start imports nothing else: the hook's module is
imported by every worker Ray starts, whatever its tasks need.
"""

from __future__ import annotations

import gc

# The collector's generation thresholds in a worker, as the CLI sets them in the driver
# (`pipeline.cli.app.GC_THRESHOLDS`). A worker that runs the record pass holds the op
# libraries' objects (albumentations' pydantic schemas, nlpaug, Arrow, numpy: hundreds of
# thousands) and makes many short-lived ones per record; at Python's default (700, 10, 10)
# its first 2,000-record pass ran ~380 young and 3 full collections, 0.11 ms of CPU a
# record, 0.01 at these (benchmarks/record_pass.py's steps, timed inside the workers).
WORKER_GC_THRESHOLDS = (50_000, 20, 20)


def worker_setup() -> None:
    """Set the collector's thresholds of this worker process."""
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
