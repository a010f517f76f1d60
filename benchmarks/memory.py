"""Peak memory of a whole process tree (a driver and everything it spawned, Ray included)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

_PEAK_FIELD = "VmHWM:"


def reset_own_peak_rss() -> None:
    """Restart this process's peak RSS (VmHWM) from its current RSS (Linux >= 4.0).

    Why not `ru_maxrss`: at exec, Linux folds the outgoing address space's high-water mark
    into the process's `ru_maxrss` (fs/exec.c: setmax_mm_hiwater_rss), and a child that
    `subprocess` starts (vfork or fork, then exec) leaves its parent's address space there:
    a child of a 2 GB parent reports at least 2 GB whatever it does. VmHWM belongs to the
    address space that exec replaced, so it starts at the child's own size, and writing 5
    to clear_refs sets it to the current RSS, so a window (a job after Ray's start-up) gets
    its own peak.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def own_peak_rss_bytes() -> int:
    """Return this process's peak RSS (VmHWM) since it started or since `reset_own_peak_rss`."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(_PEAK_FIELD):
                return int(line.split()[1]) * 1024  # the kernel writes kB (KiB)
    raise RuntimeError(f"/proc/self/status has no {_PEAK_FIELD} line (not Linux?)")


@dataclass(frozen=True)
class TreePeak:
    """Peaks over one sampling window (each summed over the tree) and the most processes seen.

    `rss` is resident memory; `anon` is resident memory minus file-backed and shared pages
    (statm's resident - shared): heap and stacks, what cannot be dropped under pressure;
    `pss` splits each shared page among the processes sharing it. `at_peak` says where the
    peak RSS was: per role (`role_of`), its processes, RSS, anonymous RSS and the RSS of its
    biggest process at that sample; `at_s` says when, in seconds from the window's start
    (so a job's peak can be put in its ingest, record pass or shard writes).
    """

    rss_bytes: int
    anon_bytes: int
    pss_bytes: int
    processes: int
    samples: int
    at_peak: dict[str, dict[str, int]] = field(default_factory=dict)
    at_s: float = 0.0


def role_of(proc: psutil.Process, root: psutil.Process) -> str:
    """Return what a process of the tree is: the driver (the root), a Ray worker (Ray titles
    them `ray::IDLE` or `ray::<task>`), a Ray agent (`ray::DashboardAgent`, ...), or the
    name of its executable or Python script (raylet, gcs_server, monitor.py, ...)."""
    if proc.pid == root.pid:
        return "driver"
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "gone"
    if not cmdline:
        return "?"
    head = cmdline[0]
    if head.startswith("ray::"):
        return "ray agent" if head.endswith("Agent") else "ray worker"
    executable = os.path.basename(head.split()[0])
    if not executable.startswith("python"):
        return executable  # raylet, gcs_server (the raylet's flags name default_worker.py)
    if any("default_worker.py" in arg for arg in cmdline):
        return "ray worker"
    script = next((a for a in cmdline[1:] if a.endswith(".py") or a.startswith("pipeline.")), "")
    return os.path.basename(script or executable)


class TreeMemorySampler:
    """Samples the summed memory of a process and all its descendants in a background thread.

    RSS is what the issue asks for. It counts a shared page (Ray's object store, libraries
    mapped by every worker) once per process that touched it, and it includes pages of
    memory-mapped files (the pipeline maps its part files), which the kernel can drop at
    will; so anonymous RSS and PSS are kept beside it. PSS comes from
    /proc/<pid>/smaps_rollup, which costs ~35 ms per sweep of a Ray tree (kernel time, on the
    cores being measured), so it is read only every `pss_interval_s`; RSS and shared (statm,
    ~0.4 ms per sweep) every `interval_s`. `mark()` closes a window and starts the next.
    """

    def __init__(
        self, pid: int, interval_s: float = 0.05, pss_interval_s: float | None = 1.0
    ) -> None:
        self._root = psutil.Process(pid)
        self._interval = interval_s
        self._pss_interval = pss_interval_s
        self._last_pss = float("-inf")
        self._roles: dict[int, str] = {}  # pid -> role_of, asked once per process
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)
        self._reset()

    def _reset(self) -> None:
        self._peak_rss = self._peak_anon = self._peak_pss = self._peak_procs = self._samples = 0
        self._at_peak: dict[str, dict[str, int]] = {}
        self._started = time.perf_counter()
        self._peak_at = self._started

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> TreePeak:
        """Return the peaks of the current window."""
        with self._lock:
            return self._window()

    def _window(self) -> TreePeak:
        return TreePeak(
            self._peak_rss,
            self._peak_anon,
            self._peak_pss,
            self._peak_procs,
            self._samples,
            self._at_peak,
            round(self._peak_at - self._started, 2),
        )

    def seconds_into_window(self) -> float:
        """Return the seconds since the current window started."""
        return time.perf_counter() - self._started

    def mark(self) -> TreePeak:
        """Return the peaks of the window that ends now, and start a new window."""
        self.sample(force_pss=True)
        with self._lock:
            peak = self._window()
            self._reset()
        return peak

    def sample(self, force_pss: bool = False) -> None:
        """Take one sample now and fold it into the peaks."""
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        now = time.perf_counter()
        with_pss = self._pss_interval is not None and (
            force_pss or now - self._last_pss >= self._pss_interval
        )
        if with_pss:
            self._last_pss = now
        rss = anon = pss = 0
        roles: dict[str, dict[str, int]] = {}
        for proc in procs:
            try:
                info = proc.memory_full_info() if with_pss else proc.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            rss += info.rss
            anon += max(0, info.rss - info.shared)
            pss += getattr(info, "pss", 0)
            role = self._roles.get(proc.pid) or role_of(proc, self._root)
            # A process seen between fork and exec is still `python` (the raylet, the GCS and
            # the dashboard showed up as three `python` processes): ask again next time.
            if not role.startswith("python"):
                self._roles[proc.pid] = role
            mine = roles.setdefault(role, {"processes": 0, "rss": 0, "anon": 0, "max_rss": 0})
            mine["processes"] += 1
            mine["rss"] += info.rss
            mine["max_rss"] = max(mine["max_rss"], info.rss)
            mine["anon"] += max(0, info.rss - info.shared)
        with self._lock:
            if rss > self._peak_rss:
                self._at_peak = roles
                self._peak_at = now
            self._peak_rss = max(self._peak_rss, rss)
            self._peak_anon = max(self._peak_anon, anon)
            self._peak_pss = max(self._peak_pss, pss)
            self._peak_procs = max(self._peak_procs, len(procs))
            self._samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.sample()
            self._stop.wait(max(0.0, self._interval - (time.perf_counter() - started)))
