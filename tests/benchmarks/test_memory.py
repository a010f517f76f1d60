"""The bench's own-peak RSS: a process's peak, not its parent's, and one window at a time."""

from __future__ import annotations

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
