"""Near-duplicates: signatures per record, the driver's plan, and the stage that applies it."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import soundfile as sf
from PIL import Image

from pipeline.record.media import decode_audio
from pipeline.stages.base import BatchContext
from pipeline.stages.quality.config import NearDupConfig
from pipeline.stages.quality.conversation import normalized
from pipeline.stages.quality.near_dup import NearDupStage
from pipeline.stages.quality.planner import clusters_of, plan_near_duplicates
from pipeline.stages.quality.signatures import (
    AUDIO_MIN_SAMPLES,
    audio_hash,
    image_hash,
    lsh_bands,
    media_signatures,
    near_dup_signatures,
    phash,
    rgb_phash,
    shingle_hashes,
)

from .corpus import clean_chinese, clean_pippa, record, table

CORPUS = Path(__file__).resolve().parents[4] / "examples" / "corpus"


def _media(name: str) -> dict:
    return {"bytes": (CORPUS / name).read_bytes(), "path": name}


def _plan(records, **config):
    cfg = NearDupConfig(**config)
    batch = table(*records)
    return batch, plan_near_duplicates(near_dup_signatures(batch, cfg), cfg)


def _edited(record_id: str) -> dict:
    """The clean PIPPA conversation with a typo fixed and a word changed (a near-copy)."""
    r = clean_pippa(record_id)
    r["messages"][2]["content"] = r["messages"][2]["content"].replace("Lad,", "Lass,")
    r["messages"][4]["content"] = r["messages"][4]["content"].replace("Forty-one", "Forty one")
    return r


def test_a_lightly_edited_conversation_is_a_text_near_duplicate_and_a_different_one_is_not():
    _, plan = _plan([clean_pippa("a"), _edited("b"), clean_chinese("c")])
    assert plan.clusters == {"a": "a", "b": "a"}
    [pair] = plan.pairs.to_pylist()
    assert (pair["a"], pair["b"], pair["modality"]) == ("a", "b", "text")
    assert pair["similarity"] >= 0.8


def test_chinese_text_is_shingled_by_characters_without_segmentation():
    a, b = clean_chinese("zh1"), clean_chinese("zh2")
    b["messages"][1]["content"] = b["messages"][1]["content"].replace("刚到", "刚刚到")
    grams, _ = shingle_hashes([normalized(a["messages"][1]["content"])], 4)
    [tea], _ = shingle_hashes(["明前龙井"], 4)
    assert tea in set(grams.tolist())  # four characters, no word boundaries needed
    _, plan = _plan([a, b])
    assert plan.clusters == {"zh1": "zh1", "zh2": "zh1"}


def test_lsh_bands_put_the_s_curve_at_the_threshold():
    b, r = lsh_bands(0.8, 128)
    assert b * r <= 128
    assert abs((1 / b) ** (1 / r) - 0.8) < 0.1


def test_a_reencoded_resized_copy_of_an_image_is_found_and_a_different_image_is_not():
    original = _media("images/sea_storm.jpg")
    im = Image.open(io.BytesIO(original["bytes"])).convert("RGB")
    buf = io.BytesIO()
    im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(buf, "JPEG", quality=60)
    copy = {"bytes": buf.getvalue(), "path": "storm_small.jpg"}
    assert bin(image_hash(original["bytes"]) ^ image_hash(copy["bytes"])).count("1") <= 8
    records = []
    for rid, media, text in (
        ("a", original, "<image>What a storm!"),
        ("b", copy, "<image>Look at those waves, Captain."),
        ("c", _media("images/forest_path.jpg"), "<image>A path through the woods."),
    ):
        r = record(rid, [("user", text), ("assistant", "Hold fast to the rail, deckhand.")])
        r["images"] = [media]
        records.append(r)
    batch, plan = _plan(records)
    pairs = [(p["a"], p["b"], p["modality"]) for p in plan.pairs.to_pylist()]
    assert ("a", "b", "image") in pairs
    assert not any("c" in p[:2] and p[2] == "image" for p in pairs)
    # Different text, same image: reported and flagged, not grouped (group_media is off).
    out = NearDupStage(plan).process(batch, BatchContext())
    assert "near_duplicate_image" in out.table["quality"].to_pylist()[0]["flags"]
    assert out.table["quality"].to_pylist()[0]["near_dup_cluster"] is None
    _, grouped = _plan(records, group_media=True)
    assert grouped.clusters["b"] == "a"


def test_a_lightly_cropped_image_and_a_noisy_clip_stay_within_the_default_distances():
    cfg = NearDupConfig()
    original = _media("images/sea_storm.jpg")["bytes"]
    im = Image.open(io.BytesIO(original)).convert("RGB")
    edge = im.width // 40  # 2.5 % off each side
    buf = io.BytesIO()
    im.crop((edge, edge, im.width - edge, im.height - edge)).save(buf, "JPEG", quality=85)
    assert bin(image_hash(original) ^ image_hash(buf.getvalue())).count("1") <= cfg.image_distance
    clip = _media("audio/ocean_waves.flac")["bytes"]
    samples, rate = decode_audio(clip)
    noise = np.random.default_rng(0).normal(0, np.sqrt(np.mean(samples**2)) / 31.6, samples.shape)
    buf = io.BytesIO()
    sf.write(buf, (samples + noise).astype(np.float32), rate, format="WAV")  # 30 dB SNR
    assert bin(audio_hash(clip) ^ audio_hash(buf.getvalue())).count("1") <= cfg.audio_distance


def test_a_quieter_reencoded_clip_is_an_audio_near_duplicate_and_another_clip_is_not():
    original = _media("audio/ocean_waves.flac")
    samples, rate = decode_audio(original["bytes"])
    buf = io.BytesIO()
    sf.write(buf, samples * 0.3, rate, format="OGG", subtype="VORBIS")
    quiet = buf.getvalue()
    assert bin(audio_hash(original["bytes"]) ^ audio_hash(quiet)).count("1") <= 4
    records = []
    for rid, data in (
        ("a", original["bytes"]),
        ("b", quiet),
        ("c", _media("audio/ship_bell.wav")["bytes"]),
    ):
        r = record(rid, [("user", f"<audio>Listen ({rid})"), ("assistant", "The sea speaks.")])
        r["audios"] = [{"bytes": data, "path": f"{rid}.ogg"}]
        records.append(r)
    _, plan = _plan(records)
    audio = [(p["a"], p["b"]) for p in plan.pairs.to_pylist() if p["modality"] == "audio"]
    assert audio == [("a", "b")]


def test_phash_of_a_32px_image_signs_its_lowest_dct_frequencies_against_their_median():
    import scipy.fft

    luma = np.random.default_rng(3).integers(0, 256, (32, 32), dtype=np.uint8)
    low = scipy.fft.dct(scipy.fft.dct(luma.astype(np.float64), axis=0), axis=1)[:8, :8]
    assert phash(luma) == int("".join("1" if v else "0" for v in (low > np.median(low)).ravel()), 2)


def test_silent_audio_has_no_hash():
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000, dtype=np.float32), 16000, format="WAV")
    assert audio_hash(buf.getvalue()) is None


def test_keep_one_keeps_the_smallest_id_whatever_order_the_tasks_returned_rows_in():
    records = [clean_pippa("m"), _edited("k"), _edited("z"), clean_chinese("x")]
    cfg = NearDupConfig(action="keep_one")
    sigs = near_dup_signatures(table(*records), cfg)
    plans = []
    for seed in range(3):
        order = list(range(sigs.num_rows))
        random.Random(seed).shuffle(order)
        plans.append(plan_near_duplicates(sigs.take(pa.array(order)), cfg))
    assert all(p.drop == plans[0].drop for p in plans)
    assert plans[0].drop == {"m": "k", "z": "k"}
    out = NearDupStage(plans[0]).process(table(*records), BatchContext())
    assert out.table["id"].to_pylist() == ["k", "x"]
    assert sorted((r.record_id, r.reason) for r in out.rejects) == [
        ("m", "near_duplicate"),
        ("z", "near_duplicate"),
    ]
    assert all("near-copy of k" in r.message for r in out.rejects)


def test_group_gives_each_cluster_one_split_group_and_the_column_its_cluster_id():
    batch, plan = _plan([clean_pippa("a"), _edited("b"), clean_chinese("c")])
    assert plan.group_key("a") == plan.group_key("b") == "near_dup:a"
    assert plan.group_key("c") is None
    out = NearDupStage(plan).process(batch, BatchContext())
    assert [q["near_dup_cluster"] for q in out.table["quality"].to_pylist()] == ["a", "a", None]
    assert out.rejects == []


def test_a_card_greeting_pasted_into_several_chats_is_flagged_even_when_the_chats_differ():
    chats = []
    for i, question in enumerate(("Any ships tonight?", "Tell me of your father.", "Why a rock?")):
        r = clean_pippa(f"g{i}")
        r["messages"][1]["content"] = question
        r["messages"][2]["content"] = f"Reply number {i}: " + "storm " * (i + 3)
        r["messages"][4]["content"] = f"Another answer {i}, about gulls and {question.lower()}"
        chats.append(r)
    batch, plan = _plan([*chats, clean_chinese()])
    assert plan.greetings == {"g0": 3, "g1": 3, "g2": 3}
    assert plan.clusters == {}
    out = NearDupStage(plan).process(batch, BatchContext())
    assert [("repeated_greeting" in q["flags"]) for q in out.table["quality"].to_pylist()] == [
        True,
        True,
        True,
        False,
    ]


def test_union_find_joins_chains_into_one_cluster_named_by_its_smallest_id():
    assert clusters_of([("c", "d"), ("a", "b"), ("b", "d")]) == {
        "a": "a",
        "b": "a",
        "c": "a",
        "d": "a",
    }


def test_distinct_records_make_no_pairs():
    n = 200
    rng = random.Random(0)
    words = "lamp fog gull ship storm keeper winter night sea rock light wave tide rope".split()
    records = [
        record(f"r{i:04d}", [("user", "Hi"), ("assistant", " ".join(rng.choices(words, k=60)))])
        for i in range(n)
    ]
    _, plan = _plan(records)
    assert plan.pairs.num_rows == 0 and plan.clusters == {}


def test_every_hash_pair_within_the_distance_is_found_among_thousands_of_random_hashes():
    from pipeline.stages.quality.planner import verified_pairs
    from pipeline.stages.quality.signatures import SIGNATURE_SCHEMA, hash_bands

    rng = np.random.default_rng(7)
    cfg = NearDupConfig()  # image_distance 8, audio_distance 4: 5 and 3 bands
    rows, planted = [], set()
    for i in range(12000):  # 6000 per modality: beyond where star-linked buckets lose pairs
        modality, distance = ("image", 8) if i % 2 else ("audio", 4)
        value = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
        rows.append((f"r{i:05d}", modality, value, distance))
        if i % 200 < 2:  # a near-copy (image or audio) exactly `distance` bits away
            flipped = value
            for bit in rng.choice(64, size=distance, replace=False):
                flipped ^= 1 << int(bit)
            rows.append((f"c{i:05d}", modality, flipped, distance))
            planted.add((f"c{i:05d}", f"r{i:05d}", modality))
    table = pa.Table.from_pylist(
        [
            {
                "id": rid,
                "modality": m,
                "item": 0,
                "bands": hash_bands(v, d),
                "signature": v.to_bytes(8, "big"),
            }
            for rid, m, v, d in rows
        ],
        schema=SIGNATURE_SCHEMA,
    )
    found = {(p["a"], p["b"], p["modality"]) for p in verified_pairs(table, cfg).to_pylist()}
    assert planted <= found
    assert len(found - planted) <= 2  # random 64-bit hashes are rarely that close


def _tone(samples: int, rate: int = 8000) -> bytes:
    t = np.arange(samples) / rate
    ramp = np.linspace(0, 1, samples)
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t) * ramp
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def test_a_clip_shorter_than_one_frame_per_segment_has_no_hash_and_is_counted(recwarn):
    short = _tone(AUDIO_MIN_SAMPLES - 1)  # 7 analysis frames for 8 segments
    assert audio_hash(short) is None
    r = record("short", [("user", "<audio>Hm?"), ("assistant", "Speak up, sailor.")])
    r["audios"] = [{"bytes": short, "path": "hm.wav"}]
    twin = dict(r, id="twin")
    batch, plan = _plan([r, twin])
    assert plan.unhashed == {"short": 1, "twin": 1}
    assert "audio" not in plan.pairs["modality"].to_pylist()  # not compared: no hash
    out = NearDupStage(plan).process(batch, BatchContext())
    assert out.stats["audio_without_hash"] == 2
    # Before, its empty segments were averaged: numpy warned "Mean of empty slice".
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_clips_of_eight_frames_or_more_keep_their_hash_bits():
    # The hashes these clips had before clips under eight frames lost theirs; guzheng's moved
    # 1 bit when a segment became the mean of six frames, not of every hop (quality5), owl
    # hoot 1 when the spectrum was read at the clip's own rate, not resampled (quality6).
    assert audio_hash(_tone(AUDIO_MIN_SAMPLES)) == 0x1A1A1A1A1A1A1A1A
    for name, bits in (
        ("guzheng_pluck.wav", 0x232B2D13D5150ECF),
        ("owl_hoot.wav", 0x1C1E1C1C1C1E1C1C),
        ("major_chord.flac", 0x3F3E3E3E363E3E3E),
    ):
        assert audio_hash(_media(f"audio/{name}")["bytes"]) == bits


# Every demo clip's and image's hash, pinned so that a change of bits is deliberate: a
# faster hash must give these bits, or the demo's clusters and content ids may move.
# quality5 changed them on purpose (the record pass's quality overhead, issue 23): a clip's
# segments average six frames each, not every hop (birdsong moved 2 bits, guzheng, ocean
# waves and shanty 1), and JPEGs are decoded by OpenCV at 1/4 scale, not 1/2 (forest path,
# tea house and the resaved storm moved 2 bits; the storm pair is now 0 bits apart, was 2).
# The demo's near-duplicate pairs are the same. quality6 read clips at their own rate, with
# no resample to 8 kHz: owl hoot and ship bell moved 1 bit; and its pHash area-averages to
# 32x32 (OpenCV), not LANCZOS (Pillow): campfire, chalkboard, fraction pies, tea house and
# both storms moved 2 bits (the storm pair is 2 bits apart again). The pairs are the same.
DEMO_HASHES = {
    "audio/birdsong.ogg": 0x18000400081,
    "audio/guzheng_pluck.wav": 0x232B2D13D5150ECF,
    "audio/kettle_whistle.flac": 0x1010101010101,
    "audio/major_chord.flac": 0x3F3E3E3E363E3E3E,
    "audio/ocean_waves.flac": 0x303030B03030303,
    "audio/owl_hoot.wav": 0x1C1E1C1C1C1E1C1C,
    "audio/shanty_melody.mp3": 0x3F170B0B171F2F2F,
    "audio/ship_bell.wav": 0xF0F0F0F0F0F0F0E,
    "audio/stream.mp3": 0x0,
    "audio/wind_gust.ogg": 0x1B1B1B131B1B1B1B,
    "images/airship_sunset.jpg": 0xCACC34B27B45CB0B,
    "images/campfire.png": 0x8C7B038C7B856C73,
    "images/chalkboard_shapes.png": 0xFA9E1FE19024E127,
    "images/constellation.png": 0x852D2B178FADF046,
    "images/desk_lamp.jpg": 0x9AE6419626C9769D,
    "images/forest_path.jpg": 0x9DF9A7C252125A2D,
    "images/fraction_pies.jpg": 0xEF2491CA46B53D4A,
    "images/mooncakes.png": 0xC07A3FB072CD81CE,
    "images/night_harbor.jpg": 0xE0AD0F72725A5ACA,
    "images/old_oak.jpg": 0xBFBBCCCC822242CB,
    "images/sea_storm.jpg": 0xD0D01F1FDAD049BC,
    "images/sea_storm_resaved.jpg": 0xF0D01F1FDAD049B8,
    "images/tea_house.jpg": 0xE6599E86596629A6,
    "images/tea_set.jpg": 0xBCCA4315BF66C489,
    "images/treasure_map.jpg": 0xCC0F97B678E0E1E0,
}


def test_every_demo_clip_and_image_keeps_its_hash_bits():
    got = {
        name: (audio_hash if name.startswith("audio/") else image_hash)(_media(name)["bytes"])
        for name in DEMO_HASHES
    }
    assert got == DEMO_HASHES


def test_the_phash_of_decoded_pixels_stays_within_two_bits_of_the_bytes_hash():
    from pipeline.record.media import decode_checked_image

    images = [n for n in DEMO_HASHES if n.startswith("images/")]
    apart = {}
    for name in images:
        data = _media(name)["bytes"]
        apart[name] = bin(rgb_phash(decode_checked_image(data, 10**8)) ^ DEMO_HASHES[name])
    assert all(bits.count("1") <= 2 for bits in apart.values())
    assert sum(bits.count("1") == 0 for bits in apart.values()) >= len(images) - 2


def test_media_signatures_use_decoded_pixels_and_samples_when_given_and_bytes_otherwise():
    image, clip = _media("images/tea_set.jpg"), _media("audio/owl_hoot.wav")
    pixels = np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB"))
    samples = decode_audio(clip["bytes"])
    cfg = NearDupConfig()
    records = [("r", [image], [clip])]
    from_bytes = media_signatures(records, cfg).to_pylist()
    decoded = media_signatures(
        records, cfg, lambda rid, i: pixels, lambda rid, i: samples
    ).to_pylist()
    assert [r["modality"] for r in decoded] == ["image", "audio"]
    assert decoded[0]["signature"] == rgb_phash(pixels).to_bytes(8, "big")
    assert from_bytes[0]["signature"] == image_hash(image["bytes"]).to_bytes(8, "big")
    assert decoded[1] == from_bytes[1]  # a WAV's decoded samples are the bytes' samples
    # Text and greeting rows only when the ingest leaves media to the record pass.
    r = record("t", [("user", "<image>Look."), ("assistant", "A fine old teapot, that one.")])
    r["images"] = [image]
    rows = near_dup_signatures(table(r), cfg, media=False)["modality"].to_pylist()
    assert "image" not in rows and "text" in rows
