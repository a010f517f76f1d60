"""Image and audio ops: formats kept, the left/right guard on flips, FLAC output, channels as asked."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from augmenters.image import decode_image, image_format
from augmenters.stats import OpCounts
from tests.augmenters.conftest import (
    jpeg_bytes,
    make_augmenter,
    make_record,
    png_rgba_bytes,
    wav_bytes,
)
from tests.augmenters.op_table import OPS, OpRow

FLIP = [{"op": "HorizontalFlip", "p": 1.0}]


def left_right_record():
    record = make_record()
    record["messages"][1]["content"] = "What is on the left side of <image> this photo?"
    record["messages"][2]["content"] = (
        "On the Left there is a dog; on the right, a house. Let's sing together!"
    )
    record["messages"][3]["content"] = "Turn right at <audio> the corner, right?"
    return record


def test_a_flip_is_skipped_and_counted_when_the_dialogue_mentions_left_or_right():
    record = left_right_record()
    variants, stats = make_augmenter(copies=3, image=FLIP).variants(record)
    assert variants == []
    assert stats.flip_guard_skipped == 3
    assert stats.ops["image:HorizontalFlip"] == OpCounts(applied=0, skipped=3)


def test_with_flip_guard_swap_the_words_of_the_turns_about_that_image_are_swapped():
    record = left_right_record()
    variants, stats = make_augmenter(copies=1, image=FLIP, flip_guard="swap").variants(record)
    (v,) = variants
    assert stats.flip_guard_swapped == 1
    assert v["messages"][1]["content"] == "What is on the right side of <image> this photo?"
    assert (
        v["messages"][2]["content"]
        == "On the Right there is a dog; on the left, a house. Let's sing together!"
    )
    # The audio turn is about another medium: untouched.
    assert v["messages"][3]["content"] == record["messages"][3]["content"]
    before, after = (
        decode_image(record["images"][0]["bytes"]),
        decode_image(v["images"][0]["bytes"]),
    )
    assert (
        np.abs(after.astype(int) - before[:, ::-1].astype(int)).mean() < 3
    )  # mirrored (JPEG noise aside)
    assert json.loads(v["augmentation"]["ops"][0]["params"])["swap_turns"] == [1, 2]


def test_a_flip_without_left_or_right_in_the_dialogue_just_happens():
    variants, stats = make_augmenter(copies=2, image=FLIP).variants(make_record())
    assert len(variants) == 2 and stats.flip_guard_skipped == 0


@pytest.mark.parametrize(
    ("data", "path", "fmt"),
    [(jpeg_bytes(), "images/a.jpg", "jpeg"), (png_rgba_bytes(), "images/a.png", "png")],
    ids=["jpeg", "png-rgba"],
)
def test_images_keep_their_format_path_and_alpha(data, path, fmt):
    record = make_record(images=[{"bytes": data, "path": path}])
    variants, _ = make_augmenter(
        copies=1, image=[{"op": "Rotate", "limit": 15, "p": 1.0}]
    ).variants(record)
    (image,) = variants[0]["images"]
    assert image_format(image["bytes"]) == fmt and image["path"] == path
    decoded, original = decode_image(image["bytes"]), decode_image(data)
    assert decoded.shape == original.shape
    if fmt == "jpeg":
        from PIL import Image

        assert Image.open(io.BytesIO(image["bytes"])).info.get("progression") is None
        assert len(image["bytes"]) > 0.8 * len(jpeg_bytes())  # quality 95, not a low default


def test_media_no_op_touched_keep_their_original_bytes():
    record = make_record()
    variants, _ = make_augmenter(copies=1, audio=[{"op": "Gain", "p": 1.0}]).variants(record)
    assert variants[0]["images"] == record["images"]
    assert variants[0]["audios"] != record["audios"]
    # A clip decoded for an op whose draw changed nothing (speed factor 1.0) is not re-encoded.
    unchanged, _ = make_augmenter(
        copies=1, text=[{"op": "KeyboardAug"}], audio=[{"op": "SpeedPerturb", "factors": [1.0]}]
    ).variants(record)
    assert unchanged[0]["audios"] == record["audios"]


def _read(data: bytes):
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data), always_2d=True)
    return samples, rate, sf.info(io.BytesIO(data)).format


@pytest.mark.parametrize(
    ("channels", "mode", "expected"), [(2, "keep", 2), (2, "mono", 1), (1, "keep", 1)]
)
def test_audio_variants_are_flac_at_the_input_rate_with_channels_as_asked(channels, mode, expected):
    record = make_record(
        audios=[{"bytes": wav_bytes(channels=channels, rate=22050), "path": "audio/song.wav"}]
    )
    augmenter = make_augmenter(
        copies=1, audio=[{"op": "SpeedPerturb", "factors": [1.25]}], audio_channels=mode
    )
    (v,) = augmenter.variants(record)[0]
    samples, rate, container = _read(v["audios"][0]["bytes"])
    original, _, _ = _read(record["audios"][0]["bytes"])
    assert (container, rate, samples.shape[1]) == ("FLAC", 22050, expected)
    assert v["audios"][0]["path"] == "audio/song.flac"
    assert abs(len(samples) - len(original) / 1.25) <= 2  # 1.25x faster: 1/1.25 of the samples


def _media_rows(modality: str) -> list:
    rows = [r for r in OPS if r.modality == modality]
    return [pytest.param(r, id=r.id) for r in rows]


@pytest.mark.parametrize("row", _media_rows("image"))
def test_every_image_op_of_the_table_keeps_a_png_with_alpha_a_png_with_alpha(row: OpRow):
    record = make_record(images=[{"bytes": png_rgba_bytes(), "path": "images/a.png"}])
    variants, _ = make_augmenter(copies=4, image=[row.spec]).variants(record)
    assert variants
    for v in variants:
        (image,) = v["images"]
        assert image_format(image["bytes"]) == "png" and image["path"] == "images/a.png"
        assert decode_image(image["bytes"]).shape[2] == 4


@pytest.mark.parametrize("row", _media_rows("audio"))
def test_every_audio_op_of_the_table_writes_flac_at_the_input_rate_and_channels(row: OpRow):
    record = make_record(
        audios=[{"bytes": wav_bytes(channels=2, rate=22050), "path": "audio/song.wav"}]
    )
    variants, _ = make_augmenter(copies=4, audio=[row.spec]).variants(record)
    assert variants
    for v in variants:
        samples, rate, container = _read(v["audios"][0]["bytes"])
        assert (container, rate, samples.shape[1]) == ("FLAC", 22050, 2)


# Ops that keep their input read the record's decoded original itself, not a copy.
KEEPERS = [
    ("image", {"op": "RandomResizedCrop", "size": [24, 24], "p": 1.0}),
    ("image", {"op": "RandomCrop", "height": 20, "width": 30, "p": 1.0}),
    ("image", {"op": "CenterCrop", "height": 20, "width": 30, "p": 1.0}),
    ("image", {"op": "Resize", "height": 20, "width": 30, "p": 1.0}),
    ("image", {"op": "HorizontalFlip", "p": 1.0}),
    ("image", {"op": "VerticalFlip", "p": 1.0}),
    ("audio", {"op": "Gain", "p": 1.0}),
    ("audio", {"op": "AddGaussianNoise", "p": 1.0}),
    ("audio", {"op": "SpeedPerturb", "factors": [0.9, 1.1]}),
]


@pytest.mark.parametrize(
    "modality,spec", KEEPERS, ids=lambda v: v if isinstance(v, str) else v["op"]
)
def test_an_op_that_keeps_its_input_runs_on_a_read_only_original(modality, spec):
    from augmenters.audio import Clip
    from augmenters.image import _READ_ONLY_TRANSFORMS
    from augmenters.registry import build_op

    op = build_op(modality, 0, spec)
    assert op.keeps_input
    if modality == "image":
        assert set(_READ_ONLY_TRANSFORMS) == {s["op"] for m, s in KEEPERS if m == "image"}
        target = decode_image(jpeg_bytes())
        target.flags.writeable = False  # a write into it raises
    else:
        samples = np.sin(np.arange(4000, dtype=np.float32) / 10)
        samples.flags.writeable = False
        target = Clip(samples, 16000)
    for seed in range(3):
        params = op.draw(np.random.default_rng(seed), target)
        if params is not None:
            op.apply(target, params)


def test_an_op_that_may_write_its_input_is_given_a_copy():
    from augmenters.registry import build_op

    assert not build_op("image", 0, {"op": "ColorJitter", "p": 1.0}).keeps_input
    assert not build_op("audio", 0, {"op": "Shift", "p": 1.0}).keeps_input


@pytest.mark.parametrize(
    "image",
    [
        # A crop hands the next op a view of the shared original: that op gets a copy.
        [
            {"op": "RandomCrop", "height": 20, "width": 30, "p": 1.0},
            {"op": "ColorJitter", "p": 1.0},
        ],
        [{"op": "HorizontalFlip", "p": 1.0}, {"op": "GaussNoise", "p": 1.0}],
    ],
    ids=["crop-then-jitter", "flip-then-noise"],
)
def test_copies_sharing_a_decoded_original_are_what_replay_makes_from_the_bytes(image):
    record = make_record()
    augmenter = make_augmenter(copies=4, image=image, audio=[{"op": "Gain", "p": 1.0}])
    pixels = decode_image(record["images"][0]["bytes"])
    pixels.flags.writeable = False  # as validation hands them over
    decoded = {("image", id(record["images"][0]["bytes"])): pixels}
    variants, _ = augmenter.variants(record, decoded)
    assert len(variants) == 4
    for v in variants:
        assert augmenter.replay(record, v["augmentation"]) == v


@pytest.mark.parametrize("mono", [True, False])
def test_variants_from_validations_samples_are_those_from_the_clips_bytes(mono):
    import soundfile as sf

    from pipeline.record.media import decode_audio

    record = make_record()
    stereo = io.BytesIO()  # two different channels: a down-mix differs from either
    t = np.arange(4000) / 16000
    wave = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)], axis=1)
    sf.write(stereo, (0.3 * wave).astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    record["audios"][0] = {**record["audios"][0], "bytes": stereo.getvalue()}
    ops = [{"op": "Gain", "p": 1.0}, {"op": "Shift", "p": 1.0}]
    channels = "mono" if mono else "keep"
    augmenter = make_augmenter(copies=3, audio=ops, audio_channels=channels)
    samples, rate = decode_audio(record["audios"][0]["bytes"])
    samples.flags.writeable = False  # as validation hands them over
    decoded = {("samples", id(record["audios"][0]["bytes"])): (samples, rate)}
    shared, _ = augmenter.variants(record, decoded)
    alone, _ = augmenter.variants(record)
    assert len(shared) == 3 and shared == alone
