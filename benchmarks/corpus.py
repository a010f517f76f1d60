"""The benchmark corpus: LLaMA-Factory-style jsonl with one 512px JPEG and one 5 s clip per record.

Generated, never downloaded, and deterministic: record `i` has the same text and media
whatever the corpus size, so smaller corpora are prefixes of larger ones and share media
files. The corpus lives under `benchmarks/_work/` (git-ignored) in a folder named by a hash
of the generator parameters; media already on disk are reused, so only the first run of a
given size pays for generation.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import wave
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

WORK_DIR = Path(__file__).resolve().parent / "_work"
GENERATOR_VERSION = 1

_WORDS = (
    "the a sword castle moon river dragon whisper lantern storm tavern quiet ancient "
    "captain ship harbor letter secret garden winter fire shadow knight promise song "
    "market forest road mountain village tea story night morning friend stranger map "
    "treasure voice bell tower rain wind star dream memory door key window candle "
    "library scholar potion merchant coin festival mask dance music heart journey"
).split()


@dataclass(frozen=True)
class CorpusSpec:
    """What one record looks like; the hash of these fields names the corpus folder."""

    image_size: int = 512
    audio_seconds: float = 5.0
    sample_rate: int = 16_000
    turns: int = 6
    words_per_turn: tuple[int, int] = (12, 40)
    jpeg_quality: int = 90
    seed: int = 20240601

    @property
    def key(self) -> str:
        payload = json.dumps({**asdict(self), "v": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Corpus:
    """A generated corpus on disk: its jsonl, its folder and its record count."""

    root: Path
    jsonl: Path
    records: int
    spec: CorpusSpec

    def lines(self) -> Iterator[dict]:
        """Yield the jsonl records as dicts (media given as paths relative to `root`)."""
        with self.jsonl.open(encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    @property
    def media_bytes(self) -> int:
        """Total size of the media files the corpus points to."""
        total = 0
        for rec in self.lines():
            for rel in rec["images"] + rec["audios"]:
                total += (self.root / rel).stat().st_size
        return total


def _image(rng: np.random.Generator, size: int) -> np.ndarray:
    """Return a photo-like BGR image: smooth colour fields, shapes, texture."""
    import cv2

    coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(4, 10))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = tuple(int(c) for c in rng.integers(0, size, 2))
        if rng.random() < 0.5:
            axes = tuple(int(a) for a in rng.integers(10, size // 4, 2))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            corner = tuple(int(c) for c in rng.integers(0, size, 2))
            cv2.rectangle(img, centre, corner, colour, -1)
    # Fine texture so the JPEG is photo-sized (~40-70 KB) rather than cartoon-sized.
    noise = rng.normal(0, 12, size=(size, size, 1)).astype(np.float32)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(img, (3, 3), 0)


def _clip(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """Return a speech-like mono int16 clip: gliding harmonics under a syllable envelope."""
    n = int(seconds * sr)
    t = np.arange(n, dtype=np.float32) / sr
    f0 = float(rng.uniform(90, 240)) * (
        1 + 0.1 * np.sin(2 * np.pi * float(rng.uniform(0.2, 1)) * t)
    )
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * float(rng.uniform(2, 5)) * t), 0, None) ** 2
    signal = 0.3 * voice * envelope + 0.01 * rng.standard_normal(n)
    return (np.clip(signal, -1, 1) * 32767).astype(np.int16)


def _wav_bytes(pcm: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _text(rng: np.random.Generator, spec: CorpusSpec) -> str:
    lo, hi = spec.words_per_turn
    words = rng.choice(_WORDS, size=int(rng.integers(lo, hi + 1)))
    return " ".join(words).capitalize() + "."


def _record(index: int, spec: CorpusSpec, media: bool = True) -> dict:
    """Return record `index` as a LLaMA-Factory row (media as relative paths; none, and
    no placeholders, when not `media`: the same text otherwise)."""
    rng = np.random.default_rng([spec.seed, index])
    messages = []
    for turn in range(spec.turns):
        role = "user" if turn % 2 == 0 else "assistant"
        content = _text(rng, spec)
        if turn == 0 and media:
            content = "<image><audio>" + content
        messages.append({"role": role, "content": content})
    record: dict = {
        "messages": messages,
        "system": "You are Mira, a wandering bard who answers in short, vivid lines.",
    }
    if media:
        record["images"] = [f"images/{index:06d}.jpg"]
        record["audios"] = [f"audios/{index:06d}.wav"]
    return record


def _write_media(args: tuple[Path, int, CorpusSpec]) -> None:
    import cv2

    root, index, spec = args
    rng = np.random.default_rng([spec.seed, index, 1])
    image_path = root / "images" / f"{index:06d}.jpg"
    audio_path = root / "audios" / f"{index:06d}.wav"
    if not image_path.exists():
        ok, enc = cv2.imencode(
            ".jpg", _image(rng, spec.image_size), [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality]
        )
        assert ok
        _atomic_write(image_path, enc.tobytes())
    if not audio_path.exists():
        pcm = _clip(rng, spec.audio_seconds, spec.sample_rate)
        _atomic_write(audio_path, _wav_bytes(pcm, spec.sample_rate))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build_corpus(
    records: int, spec: CorpusSpec | None = None, workers: int | None = None
) -> Corpus:
    """Return the corpus of `records` records, generating whatever is not on disk yet."""
    spec = spec or CorpusSpec()
    root = WORK_DIR / f"corpus-{spec.key}"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "audios").mkdir(parents=True, exist_ok=True)
    jsonl = root / f"dialogues-{records}.jsonl"
    missing = [
        i
        for i in range(records)
        if not (root / "images" / f"{i:06d}.jpg").exists()
        or not (root / "audios" / f"{i:06d}.wav").exists()
    ]
    if missing:
        workers = workers or os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_write_media, [(root, i, spec) for i in missing], chunksize=32))
    if not jsonl.exists():
        text = "".join(json.dumps(_record(i, spec)) + "\n" for i in range(records))
        _atomic_write(jsonl, text.encode())
    return Corpus(root=root, jsonl=jsonl, records=records, spec=spec)


def build_text_corpus(records: int, spec: CorpusSpec | None = None) -> Corpus:
    """Return the text-only corpus of `records` records (the media corpus's text, no media)."""
    spec = spec or CorpusSpec()
    root = WORK_DIR / f"corpus-{spec.key}"
    root.mkdir(parents=True, exist_ok=True)
    jsonl = root / f"dialogues-text-{records}.jsonl"
    if not jsonl.exists():
        text = "".join(json.dumps(_record(i, spec, media=False)) + "\n" for i in range(records))
        _atomic_write(jsonl, text.encode())
    return Corpus(root=root, jsonl=jsonl, records=records, spec=spec)


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    start = time.perf_counter()
    corpus = build_corpus(args.records)
    print(f"{corpus.jsonl} ({corpus.records} records) in {time.perf_counter() - start:.1f} s")
