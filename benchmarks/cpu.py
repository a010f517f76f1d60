"""CPU seconds spent by a process tree, by role (driver, Ray workers, Ray system processes).

Wall-clock ratios are what the issue asks for, but on a shared machine they move with
everyone else's load. CPU seconds per record move much less, so they tell where a ratio's
shortfall comes from: more work per record (CPU) or cores left idle (scheduling, waits).
"""

from __future__ import annotations

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
