"""The ported Gain and AddGaussianNoise make what audiomentations' transforms make, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from augmenters.audio import AudiomentationsOp, Clip
from augmenters.base import OpConfigError
from augmenters.registry import build_op
from augmenters.waveform import AddGaussianNoise, Gain
from pipeline.record.config import RecipeError

SPECS = [
    {"op": "Gain", "p": 1.0},
    {"op": "Gain", "min_gain_db": -6, "max_gain_db": 6.0, "p": 0.7},
    {"op": "AddGaussianNoise", "p": 1.0},
    {"op": "AddGaussianNoise", "min_amplitude": 0.001, "max_amplitude": 0.01},
]


def clips() -> list[Clip]:
    t = np.arange(4000, dtype=np.float32) / 16000
    mono = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    # An odd length leaves a Gaussian cached in the op's reused RandomState: the next
    # seed must not see it (the library reseeds the global state, which drops it).
    return [Clip(mono, 16000), Clip(mono[:3999], 16000), Clip(np.stack([mono, 0.5 * mono]), 16000)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s['op']}-{len(s)}")
def test_the_port_draws_records_and_applies_what_audiomentations_does(spec):
    args = {k: v for k, v in spec.items() if k != "op"}
    ours = build_op("audio", 0, spec)
    library = AudiomentationsOp.from_spec(spec["op"], 0, args)
    assert isinstance(ours, (Gain, AddGaussianNoise)) and ours.p == library.p
    for seed in range(4):
        for clip in clips():
            drawn = ours.draw(np.random.default_rng(seed), clip)
            assert drawn == library.draw(np.random.default_rng(seed), clip)
            out, expected = ours.apply(clip, drawn), library.apply(clip, drawn)
            assert out.samples.dtype == expected.samples.dtype == np.float32
            assert out.samples.tobytes() == expected.samples.tobytes()


def test_the_port_rejects_what_audiomentations_rejects():
    for spec in (
        {"op": "Gain", "min_gain_db": 6.0, "max_gain_db": -6.0},
        {"op": "AddGaussianNoise", "min_amplitude": 0.02, "max_amplitude": 0.01},
        {"op": "AddGaussianNoise", "min_amplitude": 0.0},
    ):
        args = {k: v for k, v in spec.items() if k != "op"}
        with pytest.raises(OpConfigError):
            AudiomentationsOp.from_spec(spec["op"], 0, args)
        with pytest.raises(RecipeError, match=r"min_\w+"):
            build_op("audio", 0, spec)
