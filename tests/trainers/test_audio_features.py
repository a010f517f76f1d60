"""Whisper features over the clips only: the extractor's features, bit for bit, for less work."""

from __future__ import annotations

import numpy as np
import pytest

from trainers.audio_features import lean_audio_processor


def _clips(*lengths: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


# A second, off the hop, short, silent; then exactly 30 s and longer (nothing to skip).
SHORT = [*_clips(16_000, 16_123, 800), np.zeros(4_000, np.float32)]
LONG = _clips(480_000, 500_000)


@pytest.mark.parametrize(
    "groups",
    [[SHORT], [[c] for c in SHORT], [SHORT + LONG]],
    ids=["one batch", "one clip at a time", "with clips of 30 s and more"],
)
def test_lean_whisper_features_equal_the_extractors_bit_for_bit(
    omni_processor, monkeypatch, groups
):
    from transformers import WhisperFeatureExtractor

    stock = omni_processor.feature_extractor
    lean = lean_audio_processor(omni_processor).feature_extractor
    assert type(lean) is not type(stock)
    computed: list[int] = []  # samples of each spectrogram the extractor computed itself
    full = WhisperFeatureExtractor._torch_extract_fbank_features

    def spectrogram(self, waveform, device="cpu"):
        computed.append(waveform.shape[-1])
        return full(self, waveform, device)

    monkeypatch.setattr(WhisperFeatureExtractor, "_torch_extract_fbank_features", spectrogram)
    # As the Qwen processors call it: padded to 30 s, with the clip's frames marked.
    kwargs = dict(sampling_rate=16_000, padding="max_length", return_attention_mask=True)
    for clips in groups:
        want = stock(clips, **kwargs)
        computed.clear()
        got = lean(clips, **kwargs)
        assert np.array_equal(want["input_features"], got["input_features"])
        assert np.array_equal(want["attention_mask"], got["attention_mask"])
        # Clips of 30 s and more: the extractor's own computation, all of it.
        assert computed == ([480_000] if len(clips) > len(SHORT) else [])


def test_the_lean_processor_is_a_copy_and_the_saved_processor_stays_whisper(
    omni_processor, causal_tokenizer, tmp_path
):
    from transformers import AutoProcessor, WhisperFeatureExtractor

    lean = lean_audio_processor(omni_processor)
    assert lean is not omni_processor and lean.tokenizer is omni_processor.tokenizer
    assert type(omni_processor.feature_extractor) is WhisperFeatureExtractor
    omni_processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded.feature_extractor) is WhisperFeatureExtractor
    # Nothing to replace: the processor itself.
    assert lean_audio_processor(causal_tokenizer) is causal_tokenizer
