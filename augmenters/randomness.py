"""Seeded random streams for one op call, and containment of libraries that use global RNG state."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator

import numpy as np

_MASK64 = (1 << 64) - 1


def draw_seed(rng: np.random.Generator) -> int:
    """Return a fresh 63-bit seed drawn from `rng` (non-negative, so it stays a JSON/int64 number)."""
    # random_raw is ~7x cheaper than rng.integers and this runs once per applied op.
    return int(rng.bit_generator.random_raw()) >> 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class SeededStreams:
    """A numpy Generator and a `random.Random` that one seed resets, cheaply and reproducibly.

    albumentations transforms draw from such a pair. Building them with
    `np.random.default_rng(seed)` costs ~25 us, more than a flip of a 224px image, so the
    pair is built once per op and reset per call by writing the PCG64 state directly.
    """

    def __init__(self) -> None:
        self._bit = np.random.PCG64(0)
        self._template = self._bit.state
        self.numpy = np.random.Generator(self._bit)
        self.python = random.Random(0)

    def reset(self, seed: int, python: bool = True) -> None:
        """Put the streams (numpy, and python unless told not to) at the start of `seed`'s sequence."""
        lo = _splitmix64(seed)
        hi = _splitmix64(lo)
        state = self._template
        state["state"] = {"state": (hi << 64) | lo, "inc": (_splitmix64(hi) << 1) | 1}
        state["has_uint32"] = 0
        state["uinteger"] = 0
        self._bit.state = state
        if python:
            self.python.seed(seed)


_streams = threading.local()


def record_generator(seed: int) -> np.random.Generator:
    """Return a numpy Generator at the start of the sequence that belongs to `seed`.

    The generator object is reused per thread (reset, not rebuilt: ~3 us instead of the
    ~25 us `default_rng` spends on SeedSequence), so use it before asking for the next one.
    """
    streams = getattr(_streams, "value", None)
    if streams is None:
        streams = _streams.value = SeededStreams()
    streams.reset(seed, python=False)
    return streams.numpy


# One lock for the process-wide `random` and `numpy.random` states: nlpaug and
# audiomentations draw from them, so two threads running them at once would interleave draws.
_GLOBAL_LOCK = threading.RLock()
_scope = threading.local()


def _legacy_numpy_seed(seed: int) -> int:
    return (seed ^ (seed >> 32)) & 0xFFFFFFFF


def _seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(_legacy_numpy_seed(seed))


class GlobalStreams:
    """A `random.Random` and a legacy `RandomState` that `reset(seed)` puts in the states
    `seeded_globals(seed)` gives `random` and `numpy.random`: code ported from a library
    that draws from them draws the same numbers, without the global lock.

    Built once (per op) and reseeded per call: building a `RandomState` costs ~300 us (it
    seeds itself from OS entropy before taking the seed), reseeding one ~5 us, and an
    audio op seeded twice per clip paid ~1 ms a record for it.
    """

    def __init__(self) -> None:
        self.python = random.Random(0)
        self.legacy = np.random.RandomState(0)

    def reset(self, seed: int) -> tuple[random.Random, np.random.RandomState]:
        """Return the two streams at the start of `seed`'s sequences."""
        # Random.seed and RandomState.seed also drop any cached Gaussian, as building does.
        self.python.seed(seed)
        self.legacy.seed(_legacy_numpy_seed(seed))
        return self.python, self.legacy


@contextlib.contextmanager
def global_random_scope() -> Iterator[None]:
    """Hold the global-RNG lock for a block; the ambient states are saved once and restored at exit.

    Saving and restoring numpy's legacy state costs ~130 us, more than many ops take; a
    record opens one scope so that each op inside pays only for seeding (~8 us).
    """
    if getattr(_scope, "depth", 0):
        _scope.depth += 1
        try:
            yield
        finally:
            _scope.depth -= 1
        return
    with _GLOBAL_LOCK:
        _scope.depth = 1
        _scope.saved = None
        try:
            yield
        finally:
            if _scope.saved is not None:
                py_state, np_state = _scope.saved
                random.setstate(py_state)
                np.random.set_state(np_state)
            _scope.saved = None
            _scope.depth = 0


@contextlib.contextmanager
def seeded_globals(seed: int) -> Iterator[None]:
    """Run a block with `random` and `numpy.random` seeded from `seed`; the ambient state is restored.

    Inside a `global_random_scope` the restore is deferred to the scope's end.
    """
    with global_random_scope():
        if _scope.saved is None:
            _scope.saved = (random.getstate(), np.random.get_state())
        _seed_globals(seed)
        yield
