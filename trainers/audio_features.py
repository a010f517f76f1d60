"""Whisper log-mel features computed over the clips, not over the padding after them.

Whisper's feature extractor (Qwen2-Audio, Qwen2.5-Omni, Qwen3-Omni, Voxtral) pads every
clip to 30 s and computes the spectrogram of all of it; the models then keep only the
clip's frames (`feature_attention_mask`). For a 1 s clip that is 30 times the work: 14-25 ms
a clip on one core, most of a training batch's data time in benchmarks/train_throughput.py.
Past the clip every frame is silence, of power exactly 0: only the clip's frames go
through the Fourier transform, and the rest is the extractor's own arithmetic on the
full-size spectrogram, so the features are the extractor's, bit for bit.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

# Processor attributes that may hold the audio feature extractor (`ProcessorMixin._audio_processor`).
_AUDIO_ATTRIBUTES = ("audio_processor", "feature_extractor")


@functools.cache
def _lean_class():
    """Return the WhisperFeatureExtractor subclass that skips the padding's spectrogram
    (built lazily: transformers is a heavy import)."""
    from transformers import WhisperFeatureExtractor

    class LeanWhisperFeatureExtractor(WhisperFeatureExtractor):
        def _torch_extract_fbank_features(self, waveform, device: str = "cpu"):
            # WhisperFeatureExtractor._torch_extract_fbank_features (transformers 5), with the
            # short-time Fourier transform cut where the clips end: frames past the cut are
            # frames of zeros, whose power is exactly 0. The mel projection and everything
            # after it run on the full-size spectrogram, as the extractor's own do, so the
            # same BLAS kernels sum in the same order (bit for bit, on any thread count).
            import numpy as np
            import torch

            samples = waveform.shape[-1]
            sounding = np.flatnonzero(np.any(np.atleast_2d(waveform) != 0, axis=0))
            end = int(sounding[-1]) + 1 if len(sounding) else 0
            hop = self.hop_length
            # Past the cut, and in the reflection STFT pads the cut with, only zeros.
            keep = -(-(end + self.n_fft) // hop) * hop
            if self.dither != 0.0 or device != "cpu" or keep >= samples:
                return super()._torch_extract_fbank_features(waveform, device)
            wave = torch.from_numpy(np.ascontiguousarray(waveform[..., :keep])).to(torch.float32)
            window = torch.hann_window(self.n_fft)
            stft = torch.stft(wave, self.n_fft, hop, window=window, return_complex=True)
            head = stft[..., :-1].abs() ** 2
            # Frames stop a hop short of the end, as the extractor drops the last one.
            magnitudes = head.new_zeros((*head.shape[:-1], samples // hop))
            magnitudes[..., : head.shape[-1]] = head
            mel_filters = torch.from_numpy(self.mel_filters).to(torch.float32)
            mel_spec = mel_filters.T @ magnitudes
            log_spec = torch.clamp(mel_spec, min=1e-10).log10()
            if wave.dim() == 2:
                max_val = log_spec.max(dim=2, keepdim=True)[0].max(dim=1, keepdim=True)[0]
                log_spec = torch.maximum(log_spec, max_val - 8.0)
            else:
                log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
            return ((log_spec + 4.0) / 4.0).numpy()

    return LeanWhisperFeatureExtractor


def lean_audio_processor(processor: Any) -> Any:
    """Return `processor` for computing model inputs with its Whisper feature extractor
    replaced by one that skips the padding's spectrogram (same features); `processor` itself
    when it has none. A shallow copy: the processor saved with a model is left as it was."""
    from transformers import WhisperFeatureExtractor

    for name in _AUDIO_ATTRIBUTES:
        extractor = getattr(processor, name, None)
        # Exactly Whisper's: a subclass may compute its features otherwise.
        if type(extractor) is WhisperFeatureExtractor:
            lean = copy.copy(extractor)
            lean.__class__ = _lean_class()
            out = copy.copy(processor)
            setattr(out, name, lean)
            return out
    return processor
