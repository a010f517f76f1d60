"""Where the stages run: an embedded local Ray, or the cluster that RAY_ADDRESS names.

Settings here come from measurements on 2-CPU machines (see PERF_NOTES.md): operator
resource reservation off, glibc malloc thresholds raised in every worker, stateless
tasks rather than actor pools, and one Ray session per process.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline.recipe import ExecutionConfig

log = logging.getLogger(__name__)

# Exported before ray.init so every worker process inherits them: without them fresh
# processes lose 30-45% of their time to page faults on media-sized allocations.
WORKER_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "16777216",
    "MALLOC_TRIM_THRESHOLD_": "268435456",
    "RAY_DATA_ENABLE_OP_RESOURCE_RESERVATION": "0",
    "TOKENIZERS_PARALLELISM": "false",
}
# Loggers that announce things on every start (token auth, disabled progress bars); our own
# rich progress replaces them, and real problems still surface as errors.
NOISY_LOGGERS = (
    "ray._private.authentication.authentication_token_setup",
    "ray.data._internal.progress",
)
# In-flight Ray Data blocks: enough for every CPU to have a few batches of media in flight.
OBJECT_STORE_BUDGET = 512 * 1024 * 1024
OBJECT_STORE_PER_CPU = 128 * 1024 * 1024
# A task handles at most this many work items, so one slow task cannot hold the tail.
MAX_ITEMS_PER_TASK = 64
# ...and each CPU gets several tasks, so stragglers are evened out.
TASKS_PER_CPU = 8


@dataclass(frozen=True)
class StageResources:
    """How one Ray stage runs: records per batch, CPUs per task, most tasks at once."""

    batch_size: int
    num_cpus: float
    concurrency: int | None

    @classmethod
    def for_stage(cls, execution: ExecutionConfig, stage: str) -> StageResources:
        """Return the recipe's settings for `stage`: its own override, else the defaults."""
        override = execution.stages.get(stage) if execution.stages else None
        return cls(
            batch_size=(override and override.batch_size) or execution.batch_size,
            num_cpus=(override and override.num_cpus) or execution.num_cpus,
            concurrency=(override and override.concurrency) or execution.concurrency,
        )


def _code_modules() -> list[Any]:
    import augmenters
    import pipeline

    return [pipeline, augmenters]


def ensure_ray() -> None:
    """Start an embedded quiet local Ray, or connect to RAY_ADDRESS; reuse a running session."""
    import ray

    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    _driver_messages_to_stderr()
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "log_to_driver": False,
        "configure_logging": True,
        "logging_level": logging.WARNING,
    }
    if address:
        # Workers of an existing cluster do not inherit this process's environment, and
        # they must run exactly this code for content ids to match: ship both.
        kwargs["runtime_env"] = {
            "env_vars": {k: os.environ[k] for k in WORKER_ENV},
            "py_modules": _code_modules(),
        }
    else:
        kwargs["include_dashboard"] = False
        # The embedded object store defaults to 30% of RAM; this caps it (e.g. on CI).
        if os.environ.get("ROLEFORGE_OBJECT_STORE_MB"):
            kwargs["object_store_memory"] = int(os.environ["ROLEFORGE_OBJECT_STORE_MB"]) * 2**20
    with _quiet(NOISY_LOGGERS):
        ray.init(address=address, **kwargs)
    log.info("ray: %s", "connected to " + address if address else "embedded local cluster")


def _driver_messages_to_stderr() -> None:
    """Send Ray's driver-side notices ("(raylet) A worker died ...") to stderr.

    Ray prints cluster error messages on the driver's stdout from a background thread
    (ray._private.worker.listen_error_messages -> print_to_stdstream with is_err False),
    which breaks `--json` output. The thread looks the function up by name on every
    message, so wrapping it routes them all to stderr; nothing is dropped.
    """
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_roleforge_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr._roleforge_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def configure_data_context() -> None:
    """Set Ray Data's options for this process: no console output, no resource reservation."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    # With reservation on, only ~1.2 batches ran at once on 2 CPUs (PERF_NOTES 1).
    ctx.op_resource_reservation_enabled = False
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # Ray Data would otherwise let finished blocks pile up to a share of the whole object
    # store (GBs) before backpressure starts; a fixed budget keeps memory flat in corpus size.
    from ray.data import ExecutionResources

    ctx.execution_options.resource_limits = ExecutionResources(
        object_store_memory=max(OBJECT_STORE_BUDGET, cluster_cpus() * OBJECT_STORE_PER_CPU)
    )
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Ray Data logs every dataset's start and finish to the console at INFO; keep those in
    # its session log file only, and let warnings through.
    from ray.data._internal.logging import SessionFileHandler

    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, SessionFileHandler):
            handler.setLevel(logging.WARNING)


def cluster_cpus() -> int:
    """Return the CPUs of the running Ray cluster (at least 1)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@dataclass(frozen=True)
class WorkItem:
    """A slice of one part file: what a single call of a pass function reads."""

    path: str
    offset: int
    length: int


def work_items(
    parts: list[tuple[str, int]], rows: int, cpus: int, batch_size: int
) -> list[WorkItem]:
    """Return slices of the part files (path, rows) small enough to keep every CPU busy."""
    # Few records: cut finer than batch_size so both CPUs of a small machine get work.
    per_item = max(1, min(batch_size, math.ceil(rows / (cpus * TASKS_PER_CPU)) if rows else 1))
    items = []
    for path, n in parts:
        items.extend(
            WorkItem(path, offset, min(per_item, n - offset)) for offset in range(0, n, per_item)
        )
    return items


def map_work_items(
    items: list[WorkItem],
    fn: Callable[..., Iterator[pa.Table]],
    fn_kwargs: dict[str, Any],
    resources: StageResources,
    cpus: int,
) -> Iterator[pa.Table]:
    """Yield the tables `fn` returns for every work item, as Ray tasks finish them.

    Ray Data receives only the small list of work items; each task memory-maps its slices
    of the part files, so neither the driver nor the object store ever holds the corpus,
    and the streaming executor bounds what is in flight.
    """
    if not items:
        return
    import ray
    from ray.data import TaskPoolStrategy

    blocks = min(len(items), max(cpus * TASKS_PER_CPU, math.ceil(len(items) / MAX_ITEMS_PER_TASK)))
    ds = ray.data.from_items(
        [{"path": i.path, "offset": i.offset, "length": i.length} for i in items],
        override_num_blocks=blocks,
    )
    ds = ds.map_batches(
        fn,
        batch_size=1,
        batch_format="pyarrow",
        zero_copy_batch=True,
        fn_kwargs=fn_kwargs,
        num_cpus=resources.num_cpus,
        compute=TaskPoolStrategy(size=resources.concurrency),
    )
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1)
