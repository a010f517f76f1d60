"""Media bytes as model inputs: decoded images and audio, and cheap placeholder-token counts."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)


def model_image(data: bytes):
    """Return an RGB PIL image from encoded bytes, decoded by the one codec every stage uses
    (EXIF orientation applied, 16-bit scaled), so the model sees what validation saw."""
    from pipeline.record.media import open_image

    return open_image(data, keep_alpha=False)


def model_audio(data: bytes, sampling_rate: int):
    """Return mono float32 samples at `sampling_rate` from encoded audio bytes."""
    import numpy as np

    from pipeline.record.media import decode_audio as decode

    wave, rate = decode(data)
    wave = wave.mean(axis=1)
    if rate != sampling_rate:
        import soxr

        wave = soxr.resample(wave, rate, sampling_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def image_size(data: bytes) -> tuple[int, int]:
    """Return (height, width) of encoded image bytes, reading only the header."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        # EXIF orientations 5-8 turn the image a quarter: the decoded image is height x width.
        if im.getexif().get(0x0112) in (5, 6, 7, 8):
            width, height = height, width
    return height, width


def audio_length(data: bytes, sampling_rate: int) -> int:
    """Return the number of samples the clip has at `sampling_rate`, reading only the header."""
    import soundfile as sf

    info = sf.info(io.BytesIO(data))
    return _length_at(info.frames, info.samplerate, sampling_rate)


def _length_at(frames: int, samplerate: int, sampling_rate: int) -> int:
    return int(round(frames * sampling_rate / samplerate))


# What a caller already read of media items, by the id of each item's bytes object: the
# bytes themselves (so a reused id never matches another item) and the header facts a
# count needs, (height, width) of an image as viewed (EXIF orientation applied) or
# (frames, sample rate) of a clip: what `image_size` and `sf.info` would read again.
MediaHeaders = Mapping[int, tuple[bytes, tuple[int, int]]]


class MediaTokenCounter:
    """Counts the tokens a processor expands one image or clip into, without processing it.

    Uses the processor's `_get_num_multimodal_tokens` (image sizes, audio lengths) so the
    length plan of a whole split reads media headers only. Returns None when the processor
    cannot tell, and the caller then measures by processing the sample.
    """

    def __init__(self, processor: Any, sampling_rate: int):
        self.processor = processor
        self.sampling_rate = sampling_rate
        self._works = {"image": True, "audio": True}
        # The count depends on the size alone (image height and width, audio samples):
        # the processor's kwargs machinery costs ~1 ms a call, a corpus repeats few sizes.
        self._by_size: dict[tuple[str, Any], int] = {}

    def count(self, kind: str, data: bytes, headers: MediaHeaders | None = None) -> int | None:
        """Return the tokens one `kind` item takes in the model input, or None if unknown;
        `headers` may hold the item's header facts, read by the caller (then not parsed
        again)."""
        if not self._works[kind]:
            return None
        try:
            size = self._size(kind, data, headers)
            known = self._by_size.get((kind, size))
            if known is not None:
                return known
            if kind == "image":
                mm = self.processor._get_num_multimodal_tokens(image_sizes=[size])
                value = int(mm["num_image_tokens"][0])
            else:
                mm = self.processor._get_num_multimodal_tokens(audio_lengths=[size])
                value = int(mm["num_audio_tokens"][0])
            self._by_size[(kind, size)] = value
            return value
        except (AttributeError, NotImplementedError, TypeError, KeyError, ValueError) as exc:
            logger.info(
                "processor cannot count %s tokens cheaply (%s); measuring instead", kind, exc
            )
            self._works[kind] = False
            return None

    def _size(self, kind: str, data: bytes, headers: MediaHeaders | None) -> Any:
        known = headers.get(id(data)) if headers else None
        if known is not None and known[0] is data:
            if kind == "image":
                return known[1]
            return _length_at(*known[1], self.sampling_rate)
        return image_size(data) if kind == "image" else audio_length(data, self.sampling_rate)
