"""The one image codec: OpenCV decodes plain JPEGs, and gives exactly Pillow's pixels; 16-bit
PCM audio decodes to exactly libsndfile's float samples."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.record.media import (
    _as_viewed,
    _plain_jpeg_pixels,
    decode_checked_image,
    decode_image,
    open_image,
)
from pipeline.record.rejection import RecordRejected
from tests.fixtures.media import truncated


def _picture(width: int = 37, height: int = 23) -> Image.Image:
    rng = np.random.default_rng(7)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))
    noise = rng.integers(-20, 21, (height, width, 3))
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


def _jpeg(**options) -> bytes:
    buf = io.BytesIO()
    _picture().save(buf, "JPEG", **options)
    return buf.getvalue()


def _cv2_jpeg(sampling: str, progressive: bool) -> bytes:
    import cv2

    factor = getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{sampling}")
    bgr = np.ascontiguousarray(np.asarray(_picture())[:, :, ::-1])
    ok, buf = cv2.imencode(
        ".jpg",
        bgr,
        [
            cv2.IMWRITE_JPEG_QUALITY, 90,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor,
            cv2.IMWRITE_JPEG_RST_INTERVAL, 2,
            cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive),
        ],
    )  # fmt: skip
    assert ok
    return buf.tobytes()


# quality, chroma subsampling (4:4:4, 4:2:2, 4:2:0), progressive
PLAIN_JPEGS = {
    f"pillow-q{q}-sub{sub}{'-progressive' if prog else ''}": (q, sub, prog)
    for q in (50, 95)
    for sub in (0, 1, 2)
    for prog in (False, True)
}


@pytest.mark.parametrize("name", sorted(PLAIN_JPEGS))
def test_opencv_decodes_a_pillow_jpeg_to_exactly_pillows_pixels(name: str) -> None:
    quality, subsampling, progressive = PLAIN_JPEGS[name]
    data = _jpeg(quality=quality, subsampling=subsampling, progressive=progressive)
    fast = _plain_jpeg_pixels(data, Image.open(io.BytesIO(data)))
    assert fast is not None, "a plain JPEG takes the OpenCV path"
    pillow = np.asarray(_as_viewed(Image.open(io.BytesIO(data)), keep_alpha=True))
    assert fast.shape == pillow.shape and np.array_equal(fast, pillow)


@pytest.mark.parametrize("sampling", ["411", "440", "422", "444"])
@pytest.mark.parametrize("progressive", [False, True])
def test_opencv_decodes_restart_marked_jpegs_to_exactly_pillows_pixels(
    sampling: str, progressive: bool
) -> None:
    data = _cv2_jpeg(sampling, progressive)
    fast = _plain_jpeg_pixels(data, Image.open(io.BytesIO(data)))
    assert fast is not None
    assert np.array_equal(fast, np.asarray(_as_viewed(Image.open(io.BytesIO(data)), True)))


def test_a_jpeg_with_an_exif_rotation_is_decoded_by_pillow_and_turned_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    buf = io.BytesIO()
    _picture(37, 23).save(buf, "JPEG", exif=exif)
    data = buf.getvalue()
    assert _plain_jpeg_pixels(data, Image.open(io.BytesIO(data))) is None
    assert decode_image(data).shape == (37, 23, 3)
    assert decode_checked_image(data, 10_000).shape == (37, 23, 3)


def test_a_jpeg_rotated_only_by_its_xmp_packet_is_turned_upright_like_open_image() -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    buf = io.BytesIO()
    _picture(37, 23).save(buf, "JPEG", xmp=xmp)  # no EXIF block at all
    data = buf.getvalue()
    assert "exif" not in Image.open(io.BytesIO(data)).info
    assert _plain_jpeg_pixels(data, Image.open(io.BytesIO(data))) is None
    upright = np.asarray(open_image(data))
    assert upright.shape == (37, 23, 3)
    assert np.array_equal(decode_image(data), upright)
    assert np.array_equal(decode_checked_image(data, 10_000), upright)


def test_a_grayscale_jpeg_is_left_to_pillow_and_comes_out_rgb() -> None:
    buf = io.BytesIO()
    _picture().convert("L").save(buf, "JPEG")
    data = buf.getvalue()
    assert _plain_jpeg_pixels(data, Image.open(io.BytesIO(data))) is None
    assert decode_image(data).shape == (23, 37, 3)


def test_a_truncated_jpeg_is_still_refused_by_the_checked_decode() -> None:
    data = truncated(_jpeg(quality=95), 0.6)
    assert _plain_jpeg_pixels(data, Image.open(io.BytesIO(data))) is None
    with pytest.raises(RecordRejected) as caught:
        decode_checked_image(data, 10_000)
    assert caught.value.reason == "corrupt_image"


def test_checked_pixels_are_read_only_and_decoded_pixels_writable() -> None:
    data = _jpeg(quality=90)
    assert not decode_checked_image(data, 10_000).flags.writeable
    assert decode_image(data).flags.writeable


@pytest.mark.parametrize(("container", "channels"), [("WAV", 1), ("WAV", 2), ("AIFF", 1)])
def test_16_bit_pcm_decodes_to_exactly_libsndfiles_own_float_samples(
    container: str, channels: int
) -> None:
    import soundfile as sf

    from pipeline.record.media import decode_audio

    every = np.arange(-32768, 32768, dtype=np.int16)  # every 16-bit value, each channel
    pcm = np.stack([np.roll(every, c * 101) for c in range(channels)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, pcm, 16000, format=container, subtype="PCM_16")
    expected, rate = sf.read(io.BytesIO(buf.getvalue()), dtype="float32", always_2d=True)
    samples, got_rate = decode_audio(buf.getvalue())
    assert samples.dtype == np.float32 and samples.shape == (len(every), channels)
    assert np.array_equal(samples, expected) and got_rate == rate == 16000


@pytest.mark.parametrize("channels", [1, 2])
def test_a_16_bit_wav_read_by_the_standard_library_gives_decode_audios_samples(
    channels: int,
) -> None:
    import soundfile as sf

    from pipeline.record.media import decode_audio, wav_pcm16

    every = np.arange(-32768, 32768, dtype=np.int16)
    pcm = np.stack([np.roll(every, c * 101) for c in range(channels)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, pcm, 22050, format="WAV", subtype="PCM_16")
    samples, rate = wav_pcm16(buf.getvalue())
    expected, expected_rate = decode_audio(buf.getvalue())
    assert samples.dtype == np.float32 and np.array_equal(samples, expected)
    assert rate == expected_rate == 22050


@pytest.mark.parametrize(
    ("container", "subtype"), [("WAV", "PCM_24"), ("WAV", "FLOAT"), ("FLAC", "PCM_16")]
)
def test_other_audio_and_a_truncated_wav_are_left_to_decode_audio(
    container: str, subtype: str
) -> None:
    import soundfile as sf

    from pipeline.record.media import wav_pcm16

    buf = io.BytesIO()
    sf.write(buf, np.zeros((800, 1), np.float32), 8000, format=container, subtype=subtype)
    assert wav_pcm16(buf.getvalue()) is None
    buf = io.BytesIO()
    sf.write(buf, np.zeros((800, 1), np.float32), 8000, format="WAV", subtype="PCM_16")
    assert wav_pcm16(buf.getvalue()) is not None
    assert wav_pcm16(truncated(buf.getvalue(), 0.7)) is None


@pytest.mark.parametrize("name", ["stream.mp3", "birdsong.ogg", "kettle_whistle.flac"])
def test_a_compressed_demo_clip_decodes_to_exactly_what_soundfile_reads(name: str) -> None:
    # An MP3 read without seeking to its start first gives other samples.
    from pathlib import Path

    import soundfile as sf

    from pipeline.record.media import decode_audio

    data = (
        Path(__file__).resolve().parents[2] / "examples" / "corpus" / "audio" / name
    ).read_bytes()
    expected, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    samples, got_rate = decode_audio(data)
    assert np.array_equal(samples, expected) and got_rate == rate


def test_a_checked_pcm_clip_comes_with_the_samples_decode_audio_reads() -> None:
    from pipeline.record.media import decode_audio, decode_checked_audio, probe_audio
    from tests.fixtures.media import audio_bytes

    data = audio_bytes("WAV", seconds=0.2)
    info, decoded = decode_checked_audio(data, 1.0)
    assert info == probe_audio(data, 1.0)
    samples, rate = decoded
    expected, expected_rate = decode_audio(data)
    assert np.array_equal(samples, expected) and rate == expected_rate
    flac = audio_bytes("FLAC", seconds=0.2)  # proved as probe_audio proves it, not kept
    assert decode_checked_audio(flac, 1.0) == (probe_audio(flac, 1.0), None)


@pytest.mark.parametrize(
    ("data", "limit", "reason"),
    [
        ("long", 0.1, "audio_too_long"),  # refused on its header, before any sample is read
        ("truncated", 1.0, "corrupt_audio"),
        ("garbage", 1.0, "corrupt_audio"),
    ],
)
def test_the_checked_audio_decode_refuses_what_the_probe_refuses(
    data: str, limit: float, reason: str
) -> None:
    from pipeline.record.media import decode_checked_audio, probe_audio
    from tests.fixtures.media import audio_bytes

    clip = {
        "long": audio_bytes("WAV", seconds=0.2),
        "truncated": truncated(audio_bytes("WAV", seconds=0.2), 0.6),
        "garbage": b"RIFF not really a wave file",
    }[data]
    for check in (decode_checked_audio, probe_audio):
        with pytest.raises(RecordRejected) as caught:
            check(clip, limit)
        assert caught.value.reason == reason
