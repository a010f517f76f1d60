"""The record-pass bench's step timer: it counts each wrapped call and leaves no wrapper behind."""

from __future__ import annotations

import time
import types
from collections import Counter

from benchmarks.record_pass import timed_steps


class _Base:
    def work(self, n: int) -> int:
        deadline = time.process_time() + 0.02
        while time.process_time() < deadline:
            pass
        return n + 1


class _Child(_Base):
    """Inherits `work`: the timer's wrapper must go from it again, not stay as its own."""


def test_timed_steps_counts_cpu_per_label_and_puts_the_originals_back():
    module = types.SimpleNamespace(helper=lambda x: x * 2)
    original_helper = module.helper
    spent: Counter[str] = Counter()
    with timed_steps([(_Child, "work", "child work"), (module, "helper", "helper")], spent):
        assert _Child().work(1) == 2
        assert module.helper(3) == 6
    assert spent["child work"] >= 0.015
    assert "helper" in spent
    assert "work" not in vars(_Child)
    assert module.helper is original_helper
    counted = spent["child work"]
    assert _Child().work(1) == 2
    assert spent["child work"] == counted  # no longer timed


def test_timed_steps_restores_after_an_error():
    spent: Counter[str] = Counter()
    try:
        with timed_steps([(_Base, "work", "base work")], spent):
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    assert vars(_Base)["work"].__qualname__ == "_Base.work"
