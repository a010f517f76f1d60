"""Near-duplicate signatures of records, returned as Arrow rows.

The ingest tasks sign each record's text and opening turn (`near_dup_signatures`); images
and clips are signed there too only with `group_media` (their pairs then join clusters,
which the split plan needs), else by the record pass right after validation
(`media_signatures`, from the pixels and samples validation decoded where it did:
pipeline/execution/media_pairs.py), and `roleforge ingest` signs everything as it reads.

One row per (record, modality, item), with the LSH band keys the driver's planner joins on
and the signature it verifies candidate pairs with:

- text: MinHash over the normalised conversation's character shingles (character n-grams
  work for Chinese and Japanese without word segmentation). rensa computes it: its Rust
  MinHash gave 0.22 ms per 800-character record here against datasketch's 1.1 ms (with
  xxhash), and its digests are the same across processes for a seed; the grams are hashed
  in numpy and a batch's MinHashes taken in one call (`shingle_hashes`). Bands of `r`
  values (b * r <= num_perm) chosen for the Jaccard threshold as datasketch's MinHashLSH does.
- image: a 64-bit pHash (the signs against their median of the 8x8 lowest DCT frequencies
  of the 32x32 grey image, as imagehash's `phash`), robust to re-encoding,
  resizing and light crops; cut into `image_distance // 2 + 1` bands, so by the pigeonhole
  principle two hashes within that Hamming distance agree on some band up to one bit.
- audio: a 64-bit spectral hash of our own (`audio_hash`), banded like images. A clip too
  short for one analysis frame per time segment, or silent, has no hash: its row has
  modality `audio_unhashed` and no bands, so it meets no other clip and is counted. Chromaprint
  (pyacoustid + fpcalc) is not used: fpcalc is a system binary outside the wheel (not
  installed here), and its fingerprints are variable-length sequences compared by
  alignment, which do not fit fixed-width LSH bands.
- greeting: the record's opening character turn, normalised and hashed, so a card greeting
  pasted into many chats is counted even when the rest of the chats differ.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.record.media import decode_audio, jpeg_luma, open_image, wav_pcm16
from pipeline.stages.quality.config import NearDupConfig
from pipeline.stages.quality.conversation import conversations, normalized

log = logging.getLogger(__name__)

SIGNATURE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("modality", pa.string()),  # text, image, audio, greeting or audio_unhashed
        pa.field("item", pa.int32()),  # which image / clip of the record (0 for text)
        pa.field("bands", pa.list_(pa.uint64())),  # LSH band keys, band i at position i
        pa.field("signature", pa.binary()),  # MinHash values (uint32 LE) or a 64-bit hash
    ]
)
MINHASH_SEED = 1  # part of the signature: changing it changes every cluster id
GREETING_MIN_CHARS = 16  # shorter openings ("Hi!") are not a pasted card greeting
# A JPEG is decoded for its pHash at the largest DCT scale-down (1/8, 1/4, 1/2) that leaves
# its short side at least IMAGE_MIN_SIDE pixels, twice pHash's 32: a 512 px photo at 1/8.
IMAGE_MIN_SIDE = 64
# Other formats, and JPEGs OpenCV does not take (`jpeg_luma`), through Pillow's draft.
IMAGE_DRAFT = ("L", (128, 128))
# The audio hash's analysis: mono, 8 time segments x 9 log-spaced bands (100 Hz - 4 kHz),
# each segment the mean of AUDIO_FRAMES evenly spaced frames of AUDIO_FFT samples at
# AUDIO_RATE: 64 ms, read at the clip's own rate as the same duration (`_audio_analysis`).
AUDIO_RATE = 8000
AUDIO_SEGMENTS, AUDIO_BANDS = 8, 9
AUDIO_FFT, AUDIO_HOP = 512, 256
AUDIO_FRAMES = 6
AUDIO_LOW_HZ, AUDIO_HIGH_HZ = 100.0, AUDIO_RATE / 2
# The shortest clip with a frame in each time segment at half-frame hops: 2304 samples,
# 288 ms at 8 kHz. A shorter one would average overlapping frames, and padding or repeating
# frames would give hashes whose repeated bits make unrelated short clips (a "mm", a click)
# look alike.
AUDIO_MIN_SAMPLES = AUDIO_FFT + (AUDIO_SEGMENTS - 1) * AUDIO_HOP


@functools.lru_cache(maxsize=16)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """Return (bands, rows per band) minimising false positives + false negatives around
    `threshold` for the S-curve 1 - (1 - s^r)^b, as datasketch's MinHashLSH chooses them."""
    s = np.linspace(0.0, 1.0, 1001)
    below, above = s <= threshold, s >= threshold
    best, choice = float("inf"), (1, num_perm)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1 - (1 - s**r) ** b
            error = np.trapezoid(p[below], s[below]) + np.trapezoid(1 - p[above], s[above])
            if error < best:
                best, choice = error, (b, r)
    return choice


def shingle_hashes(norms: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the 64-bit hashes of the character k-grams of each text (`norms`: texts as
    `normalized` returns them) in order, repeats included (a text shorter than k is one
    gram, an empty one none), flat, with the row offsets of each text's grams
    (len(norms) + 1 values).

    Hashed in numpy over the batch's code points at once: a polynomial of each gram's code
    points with fixed odd 64-bit multipliers, then splitmix64's finaliser to spread the
    bits. Building a Python string per gram for rensa to hash cost ~0.09 ms of the text
    signature's 0.13 ms per record here, rensa's MinHash 0.01 ms. The texts are joined with
    k-1 NULs (a normalised text holds none): a gram near a text's end reads zeros, never
    the next text.
    """
    lengths = np.fromiter(map(len, norms), np.int64, len(norms))
    counts = np.where(lengths == 0, 0, np.maximum(lengths - k + 1, 1))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    points = np.frombuffer(("\0" * (k - 1)).join(norms + [""]).encode("utf-32-le"), np.uint32)
    points = np.concatenate([points, np.zeros(k, np.uint32)]).astype(np.uint64)
    n = len(points) - k
    hashes = np.zeros(n, np.uint64)
    for j, multiplier in enumerate(_shingle_multipliers(k)):
        hashes += points[j : j + n] * multiplier  # wraps mod 2**64, as meant
    starts = np.concatenate([[0], np.cumsum(lengths + k - 1)[:-1]])
    grams = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
    return _splitmix64(hashes[grams]), offsets.astype(np.uint64)


@functools.lru_cache(maxsize=8)
def _shingle_multipliers(k: int) -> np.ndarray:
    """Return k odd 64-bit multipliers, the same in every process (a fixed PCG64 seed)."""
    rng = np.random.Generator(np.random.PCG64(MINHASH_SEED))
    return rng.integers(0, 2**63, size=k, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Return splitmix64's finaliser of each uint64 (a bijection that spreads every bit)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def text_minhashes(norms: list[str], k: int, num_perm: int) -> np.ndarray:
    """Return the MinHash of each normalised text's character k-grams (`shingle_hashes`)
    as rows of `num_perm` uint32 values: rensa's RMinHash (seed MINHASH_SEED) of the gram
    hashes, for the whole batch in one call. An empty text's row means nothing: callers
    leave it out."""
    from rensa import RMinHash

    hashes, offsets = shingle_hashes(norms, k)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, num_perm, MINHASH_SEED)
    return np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(norms), num_perm)


def _band_keys(values: np.ndarray, bands: int, rows: int) -> list[int]:
    import xxhash

    return [
        xxhash.xxh64_intdigest(values[i * rows : (i + 1) * rows].tobytes()) for i in range(bands)
    ]


def hash_band_count(distance: int) -> int:
    """Return how many bands a 64-bit hash is cut into for a Hamming `distance`: enough that
    two hashes within it agree on some band up to one bit (the pigeonhole principle), which
    the planner finds by probing each band's key and its one-bit flips."""
    return (distance + 2) // 2


def hash_bands(value: int, distance: int) -> list[int]:
    """Return a 64-bit hash cut into `hash_band_count(distance)` bit ranges, in order."""
    n = hash_band_count(distance)
    edges = [round(i * 64 / n) for i in range(n + 1)]
    return [
        (value >> lo) & ((1 << (hi - lo)) - 1) for lo, hi in zip(edges, edges[1:], strict=False)
    ]


def image_hash(data: bytes) -> int:
    """Return the 64-bit pHash of encoded image bytes.

    pHash reads a 32x32 grey image, so a JPEG is decoded small, luma only: by OpenCV at a
    reduced DCT scale (`jpeg_luma`; 0.64 against 0.82 ms per benchmark photo with Pillow's
    draft at 128 px, which decoded at 1/4 scale and loads through more Python). Other
    formats go through Pillow's `open_image` (`IMAGE_DRAFT`). A re-encoded, resized or
    lightly cropped copy stays within a few bits (tests/pipeline/stages/quality/
    test_near_dup.py). The luma plane goes to pHash as it is: RGB of it converts back to
    the same grey.
    """
    luma = jpeg_luma(data, IMAGE_MIN_SIDE)
    if luma is None:
        luma = np.asarray(open_image(data, keep_alpha=False, draft=IMAGE_DRAFT).convert("L"))
    return phash(luma)


def phash(luma: np.ndarray) -> int:
    """Return imagehash's `phash` of a grey image (HxW uint8), computed here: the image
    area-averaged to 32x32 (OpenCV's INTER_AREA), its unnormalised DCT-II (scipy's
    default) kept to the 8x8 lowest frequencies as two small matrix products, each bit
    whether a coefficient is above their median.

    Not imagehash's own: its path through Pillow (LANCZOS resize, two full 32x32 DCTs)
    took 0.078 against 0.017 ms per benchmark photo's 64x64 luma. The area average moves
    2 bits of 64 on 32 of the benchmark's 200 photos (none on the others) and on 6 of
    the 15 demo images against the LANCZOS one; the resaved storm is 2 bits from its
    original (was 0), and different demo images stay at least 22 bits apart, as before.
    """
    import cv2

    small = cv2.resize(luma, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    basis = _dct_basis()
    low = basis @ small @ basis.T  # scipy.fft.dct(dct(x, axis=0), axis=1)[:8, :8]
    return _bits_value(low > np.median(low))


def rgb_phash(rgb: np.ndarray) -> int:
    """Return the pHash of decoded HxWx3 uint8 RGB pixels (the record pass's, kept by
    validation): area-averaged to 32x32 first, then made grey, then `phash`.

    0.25 against `image_hash`'s 0.56 ms per 512 px benchmark photo here (no decode at all);
    187 of its 200 hashes equal the bytes' (1/8-scale luma), 13 differ by 2 bits (the
    default image_distance is 8). Measured and not taken: 64x64 first (0.36 ms, 190
    equal), every 2nd pixel (0.39 ms: a strided read is slower, 145 equal), every 4th
    (0.16 ms, but 74 equal and up to 6 bits off).
    """
    import cv2

    small = cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA)
    return phash(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))


@functools.lru_cache(maxsize=1)
def _dct_basis() -> np.ndarray:
    """Return the 8 lowest rows of the unnormalised 32-point DCT-II: 2 cos(pi k (2n+1) / 64)."""
    n = np.arange(32)
    return 2 * np.cos(np.pi * np.arange(8)[:, None] * (2 * n[None, :] + 1) / 64)


def audio_hash(data: bytes) -> int | None:
    """Return a 64-bit spectral hash of encoded audio; None for a clip shorter than 288 ms
    (AUDIO_MIN_SAMPLES at 8 kHz) or silent in the frames the hash reads.

    The clip is mixed to mono and its power spectrum averaged over 8 equal time segments
    and 9 log-spaced bands (100 Hz - 4 kHz). Each bit says whether a band is louder than the
    next band up in that segment: differences of log energies, so a gain change cancels
    out, and coarse averages, so re-encoding and mild noise move few bits. Time is relative
    (segments of the clip), so a small speed change moves little. A segment averages
    AUDIO_FRAMES evenly spaced frames, not every half-frame hop (48 of the 155 frames of a
    5 s clip).

    A 16-bit PCM WAV is read by `wav_pcm16` (the same samples as `decode_audio`'s, 0.065
    ms cheaper per benchmark clip). The spectrum is read at the clip's own rate, with frames of 64 ms (1024 samples at
    16 kHz) at the same times and the same band edges in Hz as a resample to 8 kHz and
    512-sample frames would give: the resampler's low-pass only removes what lies above
    4 kHz, which no band reads. Without soxr's resample (MQ) a benchmark clip took 0.66
    against 0.84 ms here, and 12 of its 200 clips moved 1 bit; of the demo clips, owl hoot
    and ship bell moved 1 bit. (quality5's no-resample try, which brought birdsong and
    stream within 3 bits, kept 512-sample frames: 32 ms at 16 kHz, half the resolution.)

    On the demo clips re-encoded to Ogg at a third of the gain, to MP3, with noise at 30
    and 20 dB SNR, resampled to 44.1 kHz, cut by 20 ms or by 5 %, 57 of 70 copies stay
    within 4 bits (56 with the resample), and the closest two different demo clips stay 5
    bits apart: the noise-like birdsong and stream, whose summed band powers mostly rise
    with frequency (stream's hash is 0). Bits of per-bin mean power instead (or of each
    band pair's slope against the clip's median slope) set those clips 10 (12) bits apart
    but kept only 36 (40) of the 70 copies within 4 bits: not taken.
    """
    return samples_hash(*(wav_pcm16(data) or decode_audio(data)))


def samples_hash(samples: np.ndarray, rate: int) -> int | None:
    """Return `audio_hash` of decoded (frames, channels) float32 `samples` at `rate`."""
    import scipy.fft

    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    size, window, bands = _audio_analysis(rate)
    if len(mono) < size + (AUDIO_SEGMENTS - 1) * (size // 2):
        return None
    starts = np.linspace(0, len(mono) - size, AUDIO_SEGMENTS * AUDIO_FRAMES).round()
    # Rows of a strided view: whole-row copies, far cheaper than an index per sample.
    frames = np.lib.stride_tricks.sliding_window_view(mono, size)[starts.astype(np.intp)]
    if max(float(frames.max()), -float(frames.min())) < 1e-4:
        return None  # silent where it is read (no pass over the whole clip for it)
    frames *= window  # the rows are a copy
    # scipy's float32 FFT: ~10x numpy 2.4's here, which runs single precision slowly.
    spectrum = scipy.fft.rfft(frames, axis=1, overwrite_x=True)
    spectrum = spectrum[:, : len(bands)]  # no band reads above its highest edge
    band = (spectrum.real**2 + spectrum.imag**2) @ bands  # power summed per band
    energy = band.astype(np.float64).reshape(AUDIO_SEGMENTS, AUDIO_FRAMES, AUDIO_BANDS)
    energy = np.log(energy.mean(axis=1) + 1e-10)
    return _bits_value(energy[:, :-1] > energy[:, 1:])


def _bits_value(bits: np.ndarray) -> int:
    """Return boolean `bits` (row by row, the first one highest) as an integer: a whole
    number of bytes of them packed big-endian, as int("0101...", 2) reads them."""
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


@functools.lru_cache(maxsize=16)
def _audio_analysis(rate: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Return the audio hash's frame length at `rate` (AUDIO_FFT's 64 ms), its Hann window
    and the (bins x bands) 0/1 band matrix of the bins up to the highest band edge, float32:
    single-precision FFTs are cheaper, and the bits they give equal float64's on the demo
    clips and the benchmark's 100 clips."""
    size = max(round(AUDIO_FFT * rate / AUDIO_RATE), 2)
    freqs = np.fft.rfftfreq(size, 1 / rate)
    freqs = freqs[freqs < AUDIO_HIGH_HZ]
    edges = np.geomspace(AUDIO_LOW_HZ, AUDIO_HIGH_HZ, AUDIO_BANDS + 1)
    bands = np.stack(
        [(freqs >= lo) & (freqs < hi) for lo, hi in zip(edges, edges[1:], strict=False)], axis=1
    )
    return size, np.hanning(size).astype(np.float32), bands.astype(np.float32)


def near_dup_signatures(table: pa.Table, config: NearDupConfig, media: bool = True) -> pa.Table:
    """Return the SIGNATURE_SCHEMA rows of every record of `table` (ingest tasks call this):
    text and greeting rows, and with `media` the image and audio rows (`media_signatures`).

    The data job's ingest signs media only with `group_media` (media pairs then join
    clusters, which the split plan needs); by default the record pass signs them from the
    pixels validation decoded (`media_signatures`) and the driver plans them after the pass.
    """
    rows: dict[str, list] = {f.name: [] for f in SIGNATURE_SCHEMA}

    def add(record_id: str, modality: str, item: int, bands: list[int], sig: bytes) -> None:
        for name, value in zip(rows, (record_id, modality, item, bands, sig), strict=True):
            rows[name].append(value)

    b, r = lsh_bands(config.threshold, config.num_perm)
    convs = conversations(table)
    norms = [normalized("\n".join(t.text for t in c.turns if t.role != "system")) for c in convs]
    minhashes = text_minhashes(norms, config.shingle, config.num_perm)
    for conv, norm, values in zip(convs, norms, minhashes, strict=True):
        if norm:
            add(conv.id, "text", 0, _band_keys(values, b, r), values.astype("<u4").tobytes())
        opening = normalized(next((t.text for t in conv.turns if t.role == "assistant"), ""))
        if len(opening) >= GREETING_MIN_CHARS:
            digest = hashlib.sha256(opening.encode()).digest()
            add(conv.id, "greeting", 0, [int.from_bytes(digest[:8], "big")], b"")
    text = pa.Table.from_pydict(rows, schema=SIGNATURE_SCHEMA)
    if not media:
        return text
    items = zip(
        table["id"].to_pylist(),
        table["images"].to_pylist(),
        table["audios"].to_pylist(),
        strict=True,
    )
    return pa.concat_tables([text, media_signatures(items, config)])


def media_signatures(
    records: Iterable[tuple[str, list[dict[str, Any]] | None, list[dict[str, Any]] | None]],
    config: NearDupConfig,
    pixels: Callable[[str, int], np.ndarray | None] | None = None,
    samples: Callable[[str, int], tuple[np.ndarray, int] | None] | None = None,
) -> pa.Table:
    """Return the image and audio SIGNATURE_SCHEMA rows of (id, images, audios) records.

    `pixels(id, i)` may give image i's decoded HxWx3 uint8 RGB pixels (validation keeps
    them for augmentation): its pHash is then taken from them (`rgb_phash`), not from the
    bytes; `samples(id, i)` likewise clip i's decoded (samples, rate). A media item that
    does not decode gets no row: validation quarantines its record.
    """
    rows: dict[str, list] = {f.name: [] for f in SIGNATURE_SCHEMA}

    def add(record_id: str, modality: str, item: int, value: int | None, distance: int) -> None:
        if value is None:
            values = (record_id, f"{modality}_unhashed", item, [], b"")
        else:
            bands = hash_bands(value, distance)
            values = (record_id, modality, item, bands, value.to_bytes(8, "big"))
        for name, v in zip(rows, values, strict=True):
            rows[name].append(v)

    records = list(records)
    # Every record's images, then every record's clips (as the rows were always laid out).
    for column, modality, decoded_of, from_decoded, from_bytes, distance in (
        (1, "image", pixels, rgb_phash, image_hash, config.image_distance),
        (2, "audio", samples, lambda d: samples_hash(*d), audio_hash, config.audio_distance),
    ):
        for record in records:
            record_id = record[0]
            for item, media in enumerate(record[column] or []):
                decoded = decoded_of(record_id, item) if decoded_of is not None else None
                try:
                    value = (
                        from_decoded(decoded) if decoded is not None else from_bytes(media["bytes"])
                    )
                except Exception as exc:  # noqa: BLE001 - validation names the real error
                    log.debug("no %s hash for %s[%d]: %s", modality, record_id, item, exc)
                    continue
                add(record_id, modality, item, value, distance)
    return pa.Table.from_pydict(rows, schema=SIGNATURE_SCHEMA)
