"""Where the stages run: an embedded local Ray, or the cluster that RAY_ADDRESS names.

Settings here come from measurements on 2-CPU machines (docs/ARCHITECTURE.md, "Execution
settings"): glibc malloc thresholds raised in every worker, stateless tasks rather than
actor pools, and one Ray session per process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.execution.ray_reaper import watch_driver
from pipeline.recipe import TASK_TIMEOUT_S, ExecutionConfig

log = logging.getLogger(__name__)

# Exported before ray.init so every worker process inherits them: without them fresh
# processes lose 30-45% of their time to page faults on media-sized allocations.
WORKER_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "16777216",
    "MALLOC_TRIM_THRESHOLD_": "268435456",
    "TOKENIZERS_PARALLELISM": "false",
}
# Run by every worker Ray starts for a session, named (not imported) so the driver does
# not import it and a worker imports only it (`worker_setup.py`).
WORKER_SETUP_HOOK = "pipeline.execution.worker_setup.worker_setup"
# Loggers that announce things on every start (token auth, disabled progress bars); our own
# rich progress replaces them, and real problems still surface as errors.
NOISY_LOGGERS = (
    "ray._private.authentication.authentication_token_setup",
    "ray.data._internal.progress",
)
# Each CPU gets several tasks of a pass, so stragglers are evened out.
TASKS_PER_CPU = 8
# ... and at most this many: the driver spends ~5 ms submitting, awaiting and folding in
# each task's outcome, so a big pass takes bigger tasks, not more of them (at 100,000
# records on 2 CPUs: 64 tasks, ~0.003 ms of driver CPU per record).
MAX_TASKS_PER_CPU = 32


@dataclass(frozen=True)
class StageResources:
    """How one Ray stage runs: records per batch, CPUs per task, most tasks at once, and
    how long its tasks may all stand unstarted on an idle cluster (`run_tasks`)."""

    batch_size: int
    num_cpus: float
    concurrency: int | None
    timeout_s: float = TASK_TIMEOUT_S

    @classmethod
    def for_stage(cls, execution: ExecutionConfig, *stages: str) -> StageResources:
        """Return the recipe's settings for a pass: the first of `stages` with its own
        override (a pass may answer to several names), else the defaults."""
        override = next(
            (execution.stages[s] for s in stages if execution.stages and s in execution.stages),
            None,
        )
        return cls(
            batch_size=(override and override.batch_size) or execution.batch_size,
            num_cpus=(override and override.num_cpus) or execution.num_cpus,
            concurrency=(override and override.concurrency) or execution.concurrency,
            timeout_s=execution.task_timeout_s,
        )


def _code_modules() -> list[Any]:
    # trainers too: pipeline.recipe imports trainers.config, so a worker that unpickles a
    # pass function needs it (tests/cluster caught "No module named 'trainers'").
    import augmenters
    import pipeline
    import trainers

    return [pipeline, augmenters, trainers]


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
        # Every worker of the session sets its collector's thresholds before its first task.
        "runtime_env": {"worker_process_setup_hook": WORKER_SETUP_HOOK},
    }
    if address:
        # Workers of an existing cluster do not inherit this process's environment, and
        # they must run exactly this code for content ids to match: ship both.
        kwargs["runtime_env"].update(
            env_vars={k: os.environ[k] for k in WORKER_ENV}, py_modules=_code_modules()
        )
    else:
        kwargs["include_dashboard"] = False
        # The embedded object store defaults to 30% of RAM; this caps it (e.g. on CI).
        if os.environ.get("ROLEFORGE_OBJECT_STORE_MB"):
            kwargs["object_store_memory"] = int(os.environ["ROLEFORGE_OBJECT_STORE_MB"]) * 2**20
    with _quiet(NOISY_LOGGERS):
        ray.init(address=address, **kwargs)
    if not address:
        global _REAPER
        _REAPER = watch_driver()  # held: its pipe closes only when this process ends
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


def cluster_cpus(timeout_s: float = TASK_TIMEOUT_S) -> int:
    """Return the CPUs of the running Ray cluster (at least 1); raise TasksStalled when
    Ray does not answer within `timeout_s` (`answer_within`)."""
    import ray

    cpus = answer_within(
        timeout_s, "how many CPUs the cluster has", lambda: ray.cluster_resources().get("CPU", 1)
    )
    return max(1, int(cpus))


# A worker that dies (OOM, a lost node, a kill) is retried this many times; its files are
# named by its input, so a retry overwrites what the dead attempt half wrote.
TASK_RETRIES = 3
# Tasks in flight per CPU: enough that a CPU never waits for the driver to submit the next.
IN_FLIGHT_PER_CPU = 2

_REMOTES: dict[tuple[Callable[..., Any], float], Any] = {}
_REAPER: Any = None  # the embedded cluster's reaper (pipeline/execution/ray_reaper.py)


def slice_rows(rows: int, cpus: int, max_rows: int) -> int:
    """Return how many records one task takes: several tasks per CPU (stragglers even out),
    at most `max_rows` (one slow task cannot hold the tail) unless that would give a CPU
    more than `MAX_TASKS_PER_CPU` tasks (the driver's cost is per task)."""
    if rows <= 0:
        return 1
    fair = min(max_rows, math.ceil(rows / (cpus * TASKS_PER_CPU)))
    return max(1, fair, math.ceil(rows / (cpus * MAX_TASKS_PER_CPU)))


# What the ledger counts in-process tasks under, in place of a Ray node id.
IN_PROCESS_NODE = "in-process"


class TaskRunner:
    """Where one job's passes run: in this process while every pass so far was small, on
    Ray from the first pass over more than `in_process_records` records on (Ray is started
    then and kept for the passes after it).

    Measured on 2 CPUs (docs/ARCHITECTURE.md, "Execution settings"): starting Ray and
    its workers' imports cost seconds before the first record, so a rerun with a few
    cache misses finishes sooner in the driver's process. Tasks are the same functions
    with the same inputs either way, so they write the same files.
    """

    def __init__(self, in_process_records: int):
        self.in_process_records = in_process_records
        self.on_ray = False
        self.ray_tasks = 0  # tasks this job submitted to Ray
        self._count = threading.Lock()  # `start` submits from a thread of its own

    def choose(self, records: int) -> None:
        """Move to Ray (starting it) when a pass of `records` records is too big for this
        process; once on Ray, stay."""
        if not self.on_ray and records > self.in_process_records:
            ensure_ray()
            self.on_ray = True

    def cpus(self) -> int:
        """Return the CPUs the next pass's tasks spread over (1 in this process)."""
        return cluster_cpus() if self.on_ray else 1

    def retire_workers(self) -> None:
        """On Ray, have its idle workers exit (`retire_idle_workers`): after the record
        pass, whose op libraries and leftovers they hold; nothing in this process."""
        if self.on_ray:
            retire_idle_workers()

    def share(self, value: Any) -> Any:
        """Return `value` as the tasks receive what they all share (once in Ray's store)."""
        if not self.on_ray:
            return value
        import ray

        return ray.put(value)

    def run(
        self, fn: Callable[..., Any], calls: list[tuple[Any, ...]], resources: StageResources
    ) -> Iterator[tuple[int, Any]]:
        """Yield (i, fn(*calls[i])): as Ray tasks finish them (`run_tasks`), or one after
        the other in this process, each outcome's `node` then `IN_PROCESS_NODE`."""
        if self.on_ray:
            with self._count:
                self.ray_tasks += len(calls)
            yield from run_tasks(fn, calls, resources)
            return
        for i, call in enumerate(calls):
            outcome = fn(*call)
            outcome.node = IN_PROCESS_NODE
            yield i, outcome

    def start(
        self, fn: Callable[..., Any], call: tuple[Any, ...], resources: StageResources
    ) -> Started:
        """Start fn(*call) as `run` runs it, and return at once on Ray (the task runs
        beside what this process does next; `Started.result` awaits it); in this process,
        run it now."""
        return Started(self, fn, call, resources)


class Started:
    """One call of `TaskRunner.run` started now and awaited later: on Ray it is submitted
    and watched (`run_tasks`: its stall and error handling) from a thread of its own, so
    the driver goes on submitting other tasks meanwhile; in this process it has run when
    this is made."""

    def __init__(
        self,
        runner: TaskRunner,
        fn: Callable[..., Any],
        call: tuple[Any, ...],
        resources: StageResources,
    ) -> None:
        self._outcome: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        run = functools.partial(self._run, runner.run(fn, [call], resources))
        if runner.on_ray:
            self._thread = threading.Thread(target=run, name=f"roleforge-{_name(fn)}", daemon=True)
            self._thread.start()
        else:
            run()

    def _run(self, outcomes: Iterator[tuple[int, Any]]) -> None:
        try:
            for _, outcome in outcomes:
                self._outcome = outcome
        except BaseException as exc:  # handed to whoever awaits it, as is
            self._error = exc

    def done(self) -> bool:
        """Say whether the call has finished (or failed)."""
        return self._thread is None or not self._thread.is_alive()

    def result(self) -> Any:
        """Return the call's outcome once it has finished; raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._outcome


def _retired() -> tuple[str, int]:
    """Say where this worker runs (node, pid); it exits after this task (`max_calls=1`)."""
    import ray

    return ray.get_runtime_context().get_node_id(), os.getpid()


_RETIRE: Any = None
# How long the driver waits for the retire tasks to run and the retired workers of its own
# node to be gone: exiting, a worker that ran a record pass took ~2 s (Ray's shutdown and
# the interpreter's).
RETIRE_WAIT_S = 10.0


def retire_idle_workers() -> list[tuple[str, int]]:
    """Have the cluster's idle workers exit; Ray starts fresh ones for the next tasks.

    A worker keeps what a record pass put in it: the op libraries it imported (cv2, scipy,
    nlpaug: their modules and touched library pages) and heap that `malloc_trim` cannot
    return, ~120 MB per worker measured (260 MB resident after `release_free_memory` where
    a worker that only imported the pipeline holds 142). The shard tasks that come next
    need none of it, and they peak beside it on every CPU at once: on the 2,000-record
    memory figure that was the whole job's peak. One task per CPU, each of a function a
    worker runs once (Ray's `max_calls`, meant for memory a library will not give back),
    takes every idle worker on a node that has as many as CPUs. This waits until those on
    the driver's node are gone: Ray starts the next tasks' workers at once, and old and new
    together held more than the old ones with the shard tasks in them; a CPU that other
    work holds past `RETIRE_WAIT_S` is let be (its retire task cancelled). The cost: a
    worker exit and a fresh start per CPU, in parallel (3.5-9 s measured between the
    record pass and the first shard task on 2 loaded CPUs, 0.1-0.4 s before), and a later
    job in this session imports its op libraries again; so a job retires them only where
    its recipe asks (`execution.fresh_write_workers`, default false). Return the (node, pid)
    of each worker retired.
    """
    import ray

    global _RETIRE
    if _RETIRE is None:
        _RETIRE = ray.remote(max_calls=1, num_cpus=1, scheduling_strategy="SPREAD")(_retired)
    here = ray.get_runtime_context().get_node_id()
    deadline = time.monotonic() + RETIRE_WAIT_S
    refs = [_RETIRE.remote() for _ in range(cluster_cpus())]
    # On a cluster busy with other work a CPU may not free up soon: those are not waited for.
    done, waiting = ray.wait(refs, num_returns=len(refs), timeout=RETIRE_WAIT_S)
    for ref in waiting:
        ray.cancel(ref)
    retired = [tuple(r) for r in ray.get(done)]
    pids = [pid for node, pid in retired if node == here]
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return retired


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_tasks(
    fn: Callable[..., Any], calls: list[tuple[Any, ...]], resources: StageResources
) -> Iterator[tuple[int, Any]]:
    """Yield (i, fn(*calls[i])) as Ray tasks finish them, in completion order.

    Plain stateless tasks (docs/ARCHITECTURE.md, "Execution settings"): each returns small facts, so nothing streams
    through the object store but the arguments, and the driver bounds what is in flight.
    Arguments shared by every call should be `ray.put` once by the caller.

    Never waits forever: when no task of the call finished for `resources.timeout_s` while
    Ray reported every CPU idle each time it was asked (`StallWatch`), it raises
    `TasksStalled` naming the task and what Ray said.
    """
    import ray

    if not calls:
        return
    _warn_of_forks()
    key = (fn, resources.num_cpus)
    if key not in _REMOTES:
        # SPREAD: Ray's default policy keeps tasks on the driver's node while it has room
        # for them; on a two-node cluster every record-pass task ran on the head
        # (tests/cluster); spreading puts a pass's tasks on every node.
        _REMOTES[key] = ray.remote(fn).options(
            num_cpus=resources.num_cpus, max_retries=TASK_RETRIES, scheduling_strategy="SPREAD"
        )
    remote = _REMOTES[key]
    cpus = cluster_cpus(resources.timeout_s)
    limit = resources.concurrency or max(
        1, math.ceil(cpus / max(resources.num_cpus, 0.01)) * IN_FLIGHT_PER_CPU
    )
    poll_s = min(STALL_POLL_S, resources.timeout_s)
    pending: dict[Any, int] = {}
    watch = StallWatch(resources.timeout_s, time.monotonic())
    try:
        # The first submission of a session exports the function to Ray's GCS, a call that
        # never returns when the driver's connection to it broke: it gets a deadline.
        first = answer_within(
            resources.timeout_s, f"the submission of {_name(fn)}", lambda: remote.remote(*calls[0])
        )
        pending[first] = 0
        submitted = 1
        while submitted < len(calls) or pending:
            while submitted < len(calls) and len(pending) < limit:
                pending[remote.remote(*calls[submitted])] = submitted
                submitted += 1
            done, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
            if not done:
                idle, said = cpus_idle()
                if watch.stalled(time.monotonic(), idle):
                    raise TasksStalled(_stall_message(fn, pending, len(calls), watch, said))
                continue
            watch.progress(time.monotonic())
            index = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                # The task's own exception, so the caller sees "No space left on device",
                # not a remote traceback (the worker's log keeps that).
                cause = getattr(exc, "cause", None)
                if isinstance(cause, BaseException):
                    raise cause from None
                raise
            yield index, result
    finally:
        for ref in pending:  # a failure or an abandoned run: stop the rest
            ray.cancel(ref, force=True)


# A pass with no task finished asks Ray whether anything runs this often (at most).
STALL_POLL_S = 10.0
# ... and waits this long for the answer: a driver whose connections to Ray broke may
# never get one (see `_count_fork`), which must not hang the watch itself.
ASK_RAY_TIMEOUT_S = 30.0


class TasksStalled(RuntimeError):
    """A pass's Ray tasks were submitted and never started (none finished for the recipe's
    `execution.task_timeout_s` while every CPU of the cluster stood idle), or Ray did not
    answer the driver within it."""


def answer_within(seconds: float, what: str, ask: Callable[[], Any]) -> Any:
    """Return `ask()`, asked on a daemon thread; raise TasksStalled when Ray has not
    answered `what` within `seconds`. A driver whose connection to Ray's GCS broke (see
    `_count_fork`) waits forever in such calls; the thread is left waiting, a daemon, so
    it does not hold the process at exit."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = ask()
        except BaseException as exc:  # handed to the caller as is
            box["error"] = exc

    asking = threading.Thread(target=run, name="roleforge-ask-ray", daemon=True)
    asking.start()
    asking.join(seconds)
    if "error" in box:
        raise box["error"]
    if "value" not in box:
        raise TasksStalled(
            f"Ray did not answer {what} within {seconds:g} s." + _fork_note() + _TIMEOUT_NOTE
        )
    return box["value"]


class StallWatch:
    """Decides when a call's tasks have stalled: no task finished for `timeout_s` and Ray
    said every CPU was idle each time it was asked meanwhile. A running task holds its
    CPUs, so an idle cluster runs none of them; busy CPUs (a slow task of ours, another
    job's on a shared cluster) restart the clock, since the tasks are waiting their turn.
    """

    def __init__(self, timeout_s: float, now: float):
        self.timeout_s = timeout_s
        self.idle_since = now  # since when no task finished and no CPU was seen busy

    def progress(self, now: float) -> None:
        """A task of the call finished at `now`."""
        self.idle_since = now

    def stalled(self, now: float, idle: bool) -> bool:
        """Return whether the call has stalled; `idle`: Ray just said every CPU is free,
        or did not answer (`cpus_idle`)."""
        if not idle:
            self.idle_since = now
            return False
        return now - self.idle_since >= self.timeout_s

    def idle_for(self, now: float) -> float:
        return now - self.idle_since


def cpus_idle() -> tuple[bool, str]:
    """Return whether Ray says every CPU of the cluster is free, and what it said; no
    answer within `ASK_RAY_TIMEOUT_S` counts as idle, since a cluster that cannot answer
    runs nothing for this driver either."""
    import ray

    def ask() -> tuple[float, float]:
        total = float(ray.cluster_resources().get("CPU", 0.0))
        return float(ray.available_resources().get("CPU", 0.0)), total

    try:
        free, total = answer_within(ASK_RAY_TIMEOUT_S, "how many CPUs are free", ask)
    except TasksStalled:
        return True, f"Ray did not answer how many CPUs are free within {ASK_RAY_TIMEOUT_S:g} s"
    return free >= total, f"Ray says {free:g} of {total:g} CPUs are free"


def _name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"


def _stall_message(
    fn: Callable[..., Any], pending: dict[Any, int], calls: int, watch: StallWatch, said: str
) -> str:
    first = next(iter(pending))
    return (
        f"Ray tasks of {_name(fn)} never started: none of the {calls} finished for "
        f"{watch.idle_for(time.monotonic()):.0f} s while every CPU stood idle "
        f"({len(pending)} pending, the first task {first.task_id().hex()}; {said})."
        + _fork_note()
        + _TIMEOUT_NOTE
    )


_TIMEOUT_NOTE = (
    " If the cluster needs longer (nodes still starting), raise the recipe's "
    "execution.task_timeout_s."
)


def _fork_note() -> str:
    if not _FORKS:
        return ""
    return (
        f" This process forked {_FORKS} time(s) while Ray was running (e.g. a "
        "multiprocessing pool with the 'fork' start method): forked children share the "
        "driver's connections to Ray and can break them; Ray does not support it "
        "(https://docs.ray.io/en/latest/ray-core/patterns/fork-new-processes.html). "
        "Use the 'spawn' start method, or run that work in a subprocess."
    )


# Forks of this process while Ray was running (`_count_fork`); run_tasks warns of new ones.
_FORKS = 0
_FORKS_WARNED = 0


def _count_fork() -> None:
    """Count a fork of this process while Ray runs (os.register_at_fork, in the parent).

    Two bench runs hung so (benchmarks/README.md, "Ray and fork"): `datasets.map(num_proc)`
    forked the driver, the children dropped a reference to a Ray actor handle, Ray's core
    worker code ran in them on the sockets they share with the driver, and afterwards the
    driver's lease requests never reached its raylet. subprocess (without preexec_fn) does
    not call this, since its child execs at once, nor does the 'spawn' start method."""
    global _FORKS
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        _FORKS += 1


def _warn_of_forks() -> None:
    global _FORKS_WARNED
    if _FORKS > _FORKS_WARNED:
        _FORKS_WARNED = _FORKS
        log.warning(
            "this process forked %d time(s) while Ray was running; Ray does not support "
            "forking a driver, and a task submitted after it may never start "
            "(https://docs.ray.io/en/latest/ray-core/patterns/fork-new-processes.html)",
            _FORKS,
        )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_count_fork)
