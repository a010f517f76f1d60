"""Peak memory of a whole process tree (a driver and everything it spawned, Ray included)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

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
    `pss` splits each shared page among the processes sharing it.
    """

    rss_bytes: int
    anon_bytes: int
    pss_bytes: int
    processes: int
    samples: int


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
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)
        self._reset()

    def _reset(self) -> None:
        self._peak_rss = self._peak_anon = self._peak_pss = self._peak_procs = self._samples = 0

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
            return TreePeak(
                self._peak_rss, self._peak_anon, self._peak_pss, self._peak_procs, self._samples
            )

    def mark(self) -> TreePeak:
        """Return the peaks of the window that ends now, and start a new window."""
        self.sample(force_pss=True)
        with self._lock:
            peak = TreePeak(
                self._peak_rss, self._peak_anon, self._peak_pss, self._peak_procs, self._samples
            )
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
        for proc in procs:
            try:
                info = proc.memory_full_info() if with_pss else proc.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            rss += info.rss
            anon += max(0, info.rss - info.shared)
            pss += getattr(info, "pss", 0)
        with self._lock:
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
