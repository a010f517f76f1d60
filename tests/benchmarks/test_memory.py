"""The bench's own-peak RSS: a process's peak, not its parent's, and one window at a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.memory import own_peak_rss_bytes, reset_own_peak_rss
from tests.fixtures.fresh_python import run_python

MB = 2**20

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc"
)


def _touched(n_bytes: int) -> bytes:
    return b"\1" * n_bytes  # every page written, so resident


def test_a_child_reports_its_own_peak_not_its_parents():
    held = _touched(400 * MB)  # this process (the parent) is now >= 400 MB resident
    code = (
        "import resource; from benchmarks.memory import own_peak_rss_bytes; "
        "print(own_peak_rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
    )
    out = run_python(code).stdout
    own, inherited = (int(v) for v in out.split())
    del held
    assert own < 200 * MB
    # What the scaling phase used to report: the kernel hands the parent's peak to ru_maxrss.
    assert inherited >= 400 * MB


def test_a_reset_forgets_the_peak_before_it():
    blob = _touched(300 * MB)
    before_reset = own_peak_rss_bytes()
    del blob
    reset_own_peak_rss()
    after = own_peak_rss_bytes()
    assert before_reset - after >= 250 * MB
    blob = _touched(100 * MB)
    assert own_peak_rss_bytes() >= after + 90 * MB
    del blob


def test_a_tree_peak_says_when_and_how_big_its_biggest_process_was():
    from benchmarks.memory import TreeMemorySampler

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(0.6); b = b'1' * (200 * 2**20); time.sleep(0.6)",
        ]
    )
    try:
        with TreeMemorySampler(child.pid, interval_s=0.02, pss_interval_s=None) as sampler:
            child.wait()
            ended = sampler.seconds_into_window()
            peak = sampler.mark()
    finally:
        child.kill()
    driver = peak.at_peak["driver"]
    assert driver["max_rss"] >= 200 * MB
    assert driver["max_rss"] == driver["rss"]  # one process of its role
    # After the first sleep, and at least the second sleep before the child ended.
    assert 0.55 <= peak.at_s <= ended - 0.55
