"""Audio ops: any audiomentations transform by class name, and a fast resampling SpeedPerturb.

audiomentations draws from the global `random` and `numpy.random` states, both when it
randomizes parameters and while applying (AddGaussianNoise draws its noise in `apply`).
The op therefore runs the transform under globals seeded from a seed it draws from the
record's generator (restored afterwards, see randomness.py) and records that seed: the
same seed on the same samples replays the same output.
"""

from __future__ import annotations

import importlib
import inspect
import io
import re
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from augmenters.base import Op, OpConfigError, ParamsOp, library_args, plain
from augmenters.config import OpParams
from augmenters.randomness import draw_seed, seeded_globals


@dataclass(frozen=True)
class Clip:
    """Decoded audio: float32 samples, (n,) for mono or (channels, n), and their sample rate."""

    samples: np.ndarray
    sample_rate: int


class AudioOp(Op):
    """An audio op: `draw(rng, clip)` picks parameters, `apply(clip, params)` returns the new clip."""

    modality = "audio"

    def draw(self, rng: np.random.Generator, clip: Clip) -> Any:
        raise NotImplementedError

    def apply(self, clip: Clip, params: dict[str, Any]) -> Clip:
        raise NotImplementedError

    def check(self) -> None:
        t = np.arange(1600, dtype=np.float32) / 16000
        clip = Clip((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
        try:
            params = self.draw(np.random.default_rng(0), clip)
            if isinstance(params, dict):
                self.apply(clip, params)
        except OpConfigError:
            raise
        except Exception as exc:
            raise OpConfigError(f"failed on a test clip: {exc!r}") from exc


def transform_class(name: str) -> type | None:
    """Return the audiomentations waveform transform called `name`, or None when there is none."""
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name):
        return None
    AM = importlib.import_module("audiomentations")
    from audiomentations.core.transforms_interface import BaseWaveformTransform

    cls = getattr(AM, name, None)
    return cls if inspect.isclass(cls) and issubclass(cls, BaseWaveformTransform) else None


class AudiomentationsOp(AudioOp):
    """One audiomentations transform; the op's `p` decides, the transform always applies when chosen."""

    def __init__(self, name: str, step: int, p: float, kwargs: dict[str, Any]) -> None:
        super().__init__(name, step, p)
        self.kwargs = kwargs

    @classmethod
    def from_spec(cls, name: str, step: int, args: dict[str, Any]) -> AudiomentationsOp:
        transform_cls = transform_class(name)
        if transform_cls is None:
            raise OpConfigError(f"no audiomentations waveform transform called {name!r}")
        p, args = library_args(transform_cls, args, default_p=0.5)
        op = cls(name, step, p, args)
        op._transform()  # audiomentations checks values in its constructor
        return op

    def _transform(self) -> Any:
        transform = getattr(self, "_lazy_transform", None)
        if transform is None:
            try:
                transform = transform_class(self.name)(**self.kwargs, p=1.0)
            except Exception as exc:
                raise _config_error(exc, self.kwargs) from None
            self._lazy_transform = transform
        return transform

    def _run(self, clip: Clip, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        transform = self._transform()
        with seeded_globals(seed):
            out = transform(clip.samples, clip.sample_rate)
        return out, transform.parameters

    def draw(self, rng: np.random.Generator, clip: Clip) -> dict[str, Any]:
        """Return {"seed", "drawn"}: the seed the transform runs under and its readable parameters."""
        seed = draw_seed(rng)
        out, parameters = self._run(clip, seed)
        # Kept so that apply() on the same clip does not run the transform twice.
        self._lazy_last = (seed, clip, out)
        drawn = plain({k: v for k, v in parameters.items() if k != "should_apply"}) or {}
        return {"seed": seed, "drawn": drawn}

    def apply(self, clip: Clip, params: dict[str, Any]) -> Clip:
        seed = params["seed"]
        last = getattr(self, "_lazy_last", None)
        self._lazy_last = None
        if last is not None and last[0] == seed and last[1] is clip:
            out = last[2]
        else:
            out, _ = self._run(clip, seed)
        return Clip(np.asarray(out, dtype=np.float32), clip.sample_rate)


def _config_error(exc: Exception, kwargs: dict[str, Any]) -> OpConfigError:
    message = str(exc)
    if isinstance(exc, AssertionError) and not message:
        # audiomentations validates with bare asserts: show the failed condition instead.
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)
        line = frames[-1].line if frames else ""
        key = next((k for k in kwargs if re.search(rf"\b{re.escape(k)}\b", line or "")), None)
        return OpConfigError(f"invalid value: `{line}` does not hold", key=key)
    key = next((k for k in kwargs if re.search(rf"\b{re.escape(k)}\b", message)), None)
    return OpConfigError(message or type(exc).__name__, key=key)


class SpeedPerturb(AudioOp, ParamsOp):
    """Change speed (tempo and pitch together) by resampling, the usual ASR augmentation.

    A factor f plays the clip f times faster: the samples are treated as recorded at
    f * rate and resampled (soxr, HQ) back to the rate. ~20x faster than phase-vocoder
    TimeStretch/PitchShift.
    """

    class Params(OpParams):
        # One is drawn per clip; 1.0 leaves the clip as it is.
        factors: Annotated[list[Annotated[float, Field(ge=0.5, le=2.0)]], Field(min_length=1)] = (
            Field([0.9, 1.1], description="a non-empty list of speed factors in [0.5, 2]")
        )

    params: Params
    keeps_input = True  # soxr writes the resampled clip into a new array

    def draw(self, rng: np.random.Generator, clip: Clip) -> dict[str, Any] | None:
        factors = self.params.factors
        factor = factors[int(rng.integers(len(factors)))]
        return None if factor == 1.0 else {"factor": factor}

    def apply(self, clip: Clip, params: dict[str, Any]) -> Clip:
        import soxr

        samples = clip.samples
        frames_first = samples.T if samples.ndim == 2 else samples  # soxr wants (frames, channels)
        out = soxr.resample(
            frames_first, clip.sample_rate * params["factor"], clip.sample_rate, quality="HQ"
        )
        out = out.T if samples.ndim == 2 else out
        return Clip(np.ascontiguousarray(out, dtype=np.float32), clip.sample_rate)


# --- codec -------------------------------------------------------------------------------


def decode_clip(data: bytes, mono: bool = False) -> Clip:
    """Return the decoded clip (any format libsndfile reads), down-mixed to mono if asked."""
    from pipeline.record.media import decode_audio as decode

    return clip_of(*decode(data), mono=mono)


def clip_of(samples: np.ndarray, rate: int, mono: bool = False) -> Clip:
    """Return the clip of `decode_audio`'s (samples (frames, channels), rate), as `decode_clip`."""
    if mono or samples.shape[1] == 1:
        samples = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    else:
        samples = samples.T  # (channels, frames), as audiomentations wants
    return Clip(np.ascontiguousarray(samples), int(rate))


def encode_flac(clip: Clip, scratch: bool = False) -> bytes:
    """Return the clip as 16-bit FLAC at its own sample rate (clipped to [-1, 1] first).

    `scratch`: the caller owns the samples and drops them after, so they are clipped in
    place (a variant's last use of its clip; saves a copy of it)."""
    import soundfile as sf

    # libsndfile wraps out-of-range floats around when converting to PCM; clip instead.
    samples = clip.samples
    samples = np.clip(samples, -1.0, 1.0, out=samples if scratch else None)
    buf = io.BytesIO()
    sf.write(
        buf,
        samples.T if samples.ndim == 2 else samples,
        clip.sample_rate,
        format="FLAC",
        subtype="PCM_16",
    )
    return buf.getvalue()


def variant_audio_path(path: str | None) -> str | None:
    """Return the path for a variant clip: the original's with a .flac extension."""
    if path is None:
        return None
    name = path.rsplit("/", 1)[-1]
    return (path.rsplit(".", 1)[0] if "." in name else path) + ".flac"
