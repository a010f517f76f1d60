"""CPU seconds spent by a process tree, by role (driver, Ray workers, Ray system processes).

Wall-clock ratios are what the issue asks for, but on a shared machine they move with
everyone else's load. CPU seconds per record move much less, so they tell where a ratio's
shortfall comes from: more work per record (CPU) or cores left idle (scheduling, waits).
"""

from __future__ import annotations

import os
from collections import Counter

import psutil


def _role(proc: psutil.Process, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "driver"
    try:
        name = " ".join(proc.cmdline()[:2])
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "other"
    if "raylet" in name:
        return "raylet"
    if "gcs_server" in name:
        return "gcs"
    if name.startswith("ray::") and ("Agent" in name or "Actor" in name):
        return "ray_system"
    if name.startswith("ray::") or "default_worker.py" in name:
        return "workers"
    return "ray_system"


def tree_cpu(pid: int) -> Counter[str]:
    """Return user+system CPU seconds so far of `pid` and its descendants, summed by role.

    Processes that exited in between are not counted; the pipeline's Ray workers live for
    the whole session, so over one stage the loss is negligible.
    """
    root = psutil.Process(pid)
    totals: Counter[str] = Counter()
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            totals[_role(proc, pid)] += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return totals


def cpu_delta(before: Counter[str], after: Counter[str]) -> dict[str, float]:
    """Return the CPU seconds per role between two `tree_cpu` snapshots (never negative)."""
    return {role: max(0.0, after[role] - before.get(role, 0.0)) for role in after}


def machine_busy() -> float:
    """Return the CPU seconds all processes on this machine have used so far (not idle/iowait)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def own_cpu() -> float:
    """Return the user+system CPU seconds so far of this process, its live descendants and
    the children it has reaped (a finished worker pool's processes).

    Unlike `tree_cpu`, a child that exited in between still counts (`RUSAGE_CHILDREN`), so
    a delta around a job covers `datasets`' or Data-Juicer's pools, which end with the job.
    """
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = sum(tree_cpu(psutil.Process().pid).values()) - (own.ru_utime + own.ru_stime)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime + max(0.0, live)


class CpuMeter:
    """CPU seconds from now on: this process tree's by role (`tree_cpu`) and, as `others`,
    what the rest of the machine used meanwhile (other users: a wall time taken beside them
    is longer by up to their share of the cores)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.before, self.busy = tree_cpu(self.pid), machine_busy()

    def read(self) -> dict[str, float]:
        """Return the CPU seconds per role since the meter started, `others` included."""
        cpu = cpu_delta(self.before, tree_cpu(self.pid))
        cpu["others"] = max(0.0, machine_busy() - self.busy - sum(cpu.values()))
        return cpu

    @staticmethod
    def columns(name: str, cpu: dict[str, float]) -> dict[str, float]:
        """Return a results row's two CPU columns of job `name` from a `read()`."""
        return cpu_columns(name, sum(v for k, v in cpu.items() if k != "others"), cpu["others"])


def cpu_columns(name: str, own: float, others: float) -> dict[str, float]:
    """Return a results row's CPU columns of job `name`: its own CPU seconds and the rest of
    the machine's meanwhile."""
    return {f"{name} cpu_s": round(own, 2), f"{name} others cpu_s": round(others, 2)}
