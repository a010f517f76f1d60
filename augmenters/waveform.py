"""Gain and AddGaussianNoise: audiomentations' two simplest transforms as ops of our own.

Importing any audiomentations transform imports all of them, and with them scipy.signal
(~1.5 s per fresh process on 2 cores, most of it scipy rewriting docstrings): more than
a rerun with a few misses spends on the rest of its work. These two ops draw what
audiomentations 0.43's `Gain` and `AddGaussianNoise` draw, in the same order, from the
streams `seeded_globals` would give it (`GlobalStreams`), do the same float32
arithmetic and record the same params, so a variant is the same bytes under either
(tests/augmenters/test_waveform.py compares them). Every other audiomentations transform
still runs through `audio.AudiomentationsOp`.
"""

from __future__ import annotations

import random
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import Field, model_validator

from augmenters.audio import AudioOp, Clip
from augmenters.base import OpConfigError, ParamsOp
from augmenters.config import OpParams, Probability
from augmenters.randomness import GlobalStreams, draw_seed

Positive = Annotated[float, Field(gt=0, description="a number above 0")]


class PortedWaveformOp(AudioOp, ParamsOp):
    """A port of one audiomentations waveform transform, run as `AudiomentationsOp` runs
    the library's: the op's `p` decides, the transform (built with p=1) always applies."""

    keeps_input = True  # `transform` computes new samples

    def drawn(self, py: random.Random) -> dict[str, float]:
        """Return the transform's parameters, drawn as its `randomize_parameters` draws them."""
        raise NotImplementedError

    def transform(
        self, samples: np.ndarray, drawn: dict[str, float], legacy: np.random.RandomState
    ) -> np.ndarray:
        """Return the transformed samples, computed as the transform's `apply` computes them."""
        raise NotImplementedError

    def _drawn_under(self, seed: int) -> tuple[dict[str, float], np.random.RandomState]:
        streams = getattr(self, "_lazy_streams", None)
        if streams is None:
            streams = self._lazy_streams = GlobalStreams()
        py, legacy = streams.reset(seed)
        py.random()  # BaseWaveformTransform's `should_apply` draw (always true at p=1)
        return self.drawn(py), legacy

    def draw(self, rng: np.random.Generator, clip: Clip) -> dict[str, Any]:
        """Return {"seed", "drawn"}, as `AudiomentationsOp` records them."""
        seed = draw_seed(rng)
        _check_shape(clip.samples)
        return {"seed": seed, "drawn": self._drawn_under(seed)[0]}

    def apply(self, clip: Clip, params: dict[str, Any]) -> Clip:
        samples = clip.samples
        if samples.dtype == np.float64:
            samples = np.float32(samples)
        if len(samples) > 0:
            _check_shape(samples)
            drawn, legacy = self._drawn_under(params["seed"])
            samples = self.transform(samples, drawn, legacy)
        return Clip(np.asarray(samples, dtype=np.float32), clip.sample_rate)


def _check_shape(samples: np.ndarray) -> None:
    """Raise as BaseWaveformTransform does for (samples, channels) input."""
    if samples.ndim > 1 and len(samples) > 0 and samples.shape[0] > samples.shape[1] * 8:
        raise ValueError(
            "multichannel audio must have channels first: (channels, samples), "
            f"got shape {samples.shape}"
        )


P = TypeVar("P", bound=OpParams)


def _in_order(params: P, low: str, high: str) -> P:
    """Return `params` when its `low` bound is not above its `high` one (the libraries' check)."""
    if getattr(params, low) > getattr(params, high):
        raise OpConfigError(f"{low} cannot be greater than {high}", key=low)
    return params


class Gain(PortedWaveformOp):
    """Multiply the clip by a gain drawn uniformly in decibels (audiomentations' `Gain`)."""

    class Params(OpParams):
        p: Probability = 0.5
        min_gain_db: float = -12.0
        max_gain_db: float = 12.0

        @model_validator(mode="after")
        def _ordered(self) -> Gain.Params:
            return _in_order(self, "min_gain_db", "max_gain_db")

    params: Params

    def drawn(self, py: random.Random) -> dict[str, float]:
        decibels = py.uniform(self.params.min_gain_db, self.params.max_gain_db)
        return {"amplitude_ratio": 10 ** (decibels / 20)}

    def transform(
        self, samples: np.ndarray, drawn: dict[str, float], legacy: np.random.RandomState
    ) -> np.ndarray:
        return samples * drawn["amplitude_ratio"]


class AddGaussianNoise(PortedWaveformOp):
    """Add white noise of an amplitude drawn uniformly (audiomentations' `AddGaussianNoise`)."""

    class Params(OpParams):
        p: Probability = 0.5
        min_amplitude: Positive = 0.001
        max_amplitude: Positive = 0.015

        @model_validator(mode="after")
        def _ordered(self) -> AddGaussianNoise.Params:
            return _in_order(self, "min_amplitude", "max_amplitude")

    params: Params

    def drawn(self, py: random.Random) -> dict[str, float]:
        return {"amplitude": py.uniform(self.params.min_amplitude, self.params.max_amplitude)}

    def transform(
        self, samples: np.ndarray, drawn: dict[str, float], legacy: np.random.RandomState
    ) -> np.ndarray:
        noise = legacy.randn(*samples.shape).astype(np.float32)
        # samples + amplitude * noise, in the one new array (the same float32 arithmetic).
        np.multiply(noise, drawn["amplitude"], out=noise)
        return np.add(samples, noise, out=noise)


WAVEFORM_OPS: dict[str, type[PortedWaveformOp]] = {
    "Gain": Gain,
    "AddGaussianNoise": AddGaussianNoise,
}
