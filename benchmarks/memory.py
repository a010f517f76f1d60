"""Peak memory of a whole process tree (a driver and everything it spawned, Ray included)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class TreePeak:
    """Peaks over the sampling window: summed RSS, summed PSS, and the most processes seen."""

    rss_bytes: int
    pss_bytes: int
    processes: int
    samples: int


class TreeMemorySampler:
    """Samples the summed memory of a process and all its descendants in a background thread.

    RSS is what the issue asks for; it counts a shared page (Ray's object store, libraries
    mapped by every worker) once per process that touched it, so PSS (each shared page split
    among its sharers) is kept beside it as the closer measure of real memory use. PSS comes
    from /proc/<pid>/smaps_rollup, which costs ~35 ms per sweep of a Ray tree (kernel time,
    on the cores being measured), so it is read only every `pss_interval_s`; RSS (statm,
    ~0.4 ms per sweep) every `interval_s`.
    """

    def __init__(
        self, pid: int, interval_s: float = 0.05, pss_interval_s: float | None = 1.0
    ) -> None:
        self._root = psutil.Process(pid)
        self._interval = interval_s
        self._pss_interval = pss_interval_s
        self._last_pss = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)
        self._peak_rss = self._peak_pss = self._peak_procs = self._samples = 0

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> TreePeak:
        return TreePeak(self._peak_rss, self._peak_pss, self._peak_procs, self._samples)

    def sample(self) -> None:
        """Take one sample now and fold it into the peaks."""
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        now = time.perf_counter()
        with_pss = self._pss_interval is not None and now - self._last_pss >= self._pss_interval
        if with_pss:
            self._last_pss = now
        rss = pss = 0
        for proc in procs:
            try:
                if with_pss:
                    info = proc.memory_full_info()
                    pss += info.pss
                else:
                    info = proc.memory_info()
                rss += info.rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        self._peak_rss = max(self._peak_rss, rss)
        self._peak_pss = max(self._peak_pss, pss)
        self._peak_procs = max(self._peak_procs, len(procs))
        self._samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.sample()
            self._stop.wait(max(0.0, self._interval - (time.perf_counter() - started)))
        self.sample()
