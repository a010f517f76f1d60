"""The alternatives roleforge is measured against, built straight from the libraries.

- `PlainChain`: the recipe's ops called directly (cv2 + albumentations, soundfile +
  audiomentations + soxr, nlpaug), the "limit" a single core can reach;
- `plain_loop`: that chain over records in one Python loop on one core;
- `datasets_map_job`: `datasets.Dataset.map(num_proc=N)` followed by `save_to_disk`;
- `naive_ray_job`: `ray.data.read_json -> map_batches -> write_parquet`, written the way
  the Ray Data docs show it, with the defaults a user would keep.

All of them produce, per input record, the original plus `copies` variants, with the same
columns (id, parent_id, source, messages, images, audios, augmentation params).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# What our augmenter writes for a variant's media; the plain chain must match it so both
# sides pay for the same encoders (see `PlainChain.configure_encoders`).
DEFAULT_JPEG_QUALITY = 95
DEFAULT_AUDIO_FORMAT = "FLAC"
DEFAULT_AUDIO_SUBTYPE = "PCM_16"


@dataclass
class MediaRecord:
    """One record's inputs for the augmentation chain: messages and undecoded media bytes."""

    key: str
    messages: list[dict[str, Any]]
    images: list[bytes]
    audios: list[bytes]


@dataclass
class Encoders:
    """How a variant's media are written back to bytes."""

    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    audio_format: str = DEFAULT_AUDIO_FORMAT
    audio_subtype: str = DEFAULT_AUDIO_SUBTYPE


@dataclass
class PlainChain:
    """The recipe's augmentation ops built directly from the libraries, applied per record."""

    augment: dict[str, Any]
    seed: int = 0
    encoders: Encoders = field(default_factory=Encoders)

    def __post_init__(self) -> None:
        import albumentations as A
        import audiomentations as am

        self.copies = int(self.augment.get("copies", 0))
        self._rng = np.random.default_rng(self.seed)
        image_ops = []
        for spec in self.augment.get("image", []):
            kwargs = {k: _tuples(v) for k, v in spec.items() if k != "op"}
            image_ops.append(getattr(A, spec["op"])(**kwargs))
        self._image = A.Compose(image_ops, seed=self.seed)
        audio_ops, self._speed = [], None
        for spec in self.augment.get("audio", []):
            kwargs = {k: v for k, v in spec.items() if k != "op"}
            if spec["op"] == "SpeedPerturb":
                self._speed = (list(kwargs["factors"]), float(kwargs.get("p", 1.0)))
            else:
                audio_ops.append(getattr(am, spec["op"])(**kwargs))
        self._audio = am.Compose(audio_ops)
        self._text = [(_nlpaug_op(spec), spec) for spec in self.augment.get("text", [])]

    # -- one modality each -------------------------------------------------------------
    def decode_image(self, data: bytes) -> np.ndarray:
        import cv2

        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    def augment_image(self, image: np.ndarray) -> bytes:
        import cv2

        out = self._image(image=image)["image"]
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.encoders.jpeg_quality])
        if not ok:
            raise ValueError("JPEG encode failed")
        return enc.tobytes()

    def decode_audio(self, data: bytes) -> tuple[np.ndarray, int]:
        import soundfile as sf

        samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        return samples, sr

    def augment_audio(self, samples: np.ndarray, sr: int) -> bytes:
        import soundfile as sf
        import soxr

        out = self._audio(samples=samples, sample_rate=sr)
        if self._speed is not None:
            factors, p = self._speed
            if self._rng.random() < p:
                factor = float(self._rng.choice(factors))
                # Speed perturbation as in Kaldi: resample, then play at the original rate.
                out = soxr.resample(out, sr, sr / factor)
        buf = io.BytesIO()
        sf.write(
            buf,
            out,
            sr,
            format=self.encoders.audio_format,
            subtype=self.encoders.audio_subtype,
        )
        return buf.getvalue()

    def augment_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for message in messages:
            content = message["content"]
            for op, spec in self._text:
                roles = spec.get("roles", ["user", "assistant"])
                if message["role"] in roles and self._rng.random() < float(spec.get("p", 1.0)):
                    content = _augment_text(op, content)
            out.append({**message, "content": content})
        return out

    # -- a whole record ------------------------------------------------------------------
    def variants(self, record: MediaRecord) -> list[dict[str, Any]]:
        """Return the record's `copies` variants: decode once, augment and encode per copy."""
        images = [self.decode_image(b) for b in record.images]
        audios = [self.decode_audio(b) for b in record.audios]
        return self.variants_of(record.messages, images, audios)

    def variants_of(
        self,
        messages: list[dict[str, Any]],
        images: list[np.ndarray],
        audios: list[tuple[np.ndarray, int]],
    ) -> list[dict[str, Any]]:
        """Return `copies` variants of already decoded media (for engines that decode)."""
        out = []
        for copy in range(self.copies):
            out.append(
                {
                    "copy": copy,
                    "messages": self.augment_messages(messages),
                    "images": [self.augment_image(img) for img in images],
                    "audios": [self.augment_audio(s, sr) for s, sr in audios],
                }
            )
        return out


_PLACEHOLDERS = re.compile(r"(<image>|<audio>)")


def _augment_text(op: Any, content: str) -> str:
    """Return `content` with the op applied between media placeholders, which stay intact."""
    parts = _PLACEHOLDERS.split(content)
    for i, part in enumerate(parts):
        if i % 2 == 0 and part.strip():
            result = op.augment(part)
            parts[i] = result[0] if isinstance(result, list) else result
    return "".join(parts)


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _nlpaug_op(spec: dict[str, Any]) -> Any:
    import nlpaug.augmenter.char as nac

    kwargs = {k: v for k, v in spec.items() if k not in ("op", "roles", "p")}
    module = nac
    if not hasattr(nac, spec["op"]):
        import nlpaug.augmenter.word as naw

        module = naw
    return getattr(module, spec["op"])(**kwargs)


def load_media_records(jsonl: Path, limit: int | None = None) -> list[MediaRecord]:
    """Return the corpus records with their media bytes read into memory."""
    root = jsonl.parent
    records = []
    with jsonl.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                break
            row = json.loads(line)
            records.append(
                MediaRecord(
                    key=f"{jsonl.name}:{i}",
                    messages=_with_system(row),
                    images=[(root / p).read_bytes() for p in row.get("images", [])],
                    audios=[(root / p).read_bytes() for p in row.get("audios", [])],
                )
            )
    return records


def media_records_from_table(table: Any) -> list[MediaRecord]:
    """Return canonical records (an Arrow table of the pipeline's WORK schema) as loop inputs.

    The plain loop then runs on exactly the records the pipeline's stage gets, media bytes
    and all; the system turn is already one of the messages.
    """
    records = []
    for row in (r for batch in table.to_batches(max_chunksize=64) for r in batch.to_pylist()):
        records.append(
            MediaRecord(
                key=row.get("source_ref") or row["id"],
                messages=[{"role": m["role"], "content": m["content"]} for m in row["messages"]],
                images=[m["bytes"] for m in row["images"]],
                audios=[m["bytes"] for m in row["audios"]],
            )
        )
    return records


def _with_system(row: dict[str, Any]) -> list[dict[str, Any]]:
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    if row.get("system"):
        messages.insert(0, {"role": "system", "content": row["system"]})
    return messages


@dataclass(frozen=True)
class LoopResult:
    """What the plain loop did: records in, variants out, wall and CPU seconds."""

    records: int
    variants: int
    seconds: float
    cpu_seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    def plus(self, other: LoopResult) -> LoopResult:
        """Return the result of both loops together (one loop split in two parts)."""
        return LoopResult(
            self.records + other.records,
            self.variants + other.variants,
            self.seconds + other.seconds,
            self.cpu_seconds + other.cpu_seconds,
        )


def plain_loop(chain: PlainChain, records: Iterable[MediaRecord]) -> LoopResult:
    """Return the timing of the chain applied to every record in one loop on this core."""
    n = variants = 0
    start, start_cpu = time.perf_counter(), time.thread_time()
    for record in records:
        variants += len(chain.variants(record))
        n += 1
    return LoopResult(
        records=n,
        variants=variants,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.thread_time() - start_cpu,
    )


# -- the output rows every alternative writes ----------------------------------------------
def output_rows(
    chain: PlainChain, source: str, record: MediaRecord, paths: dict[str, list[str]]
) -> list[dict]:
    """Return the original row and its variants, in the canonical columns."""
    parent = hashlib.sha256(f"{source}\0{record.key}".encode()).hexdigest()[:32]
    rows = [
        {
            "id": parent,
            "parent_id": None,
            "source": source,
            "messages": record.messages,
            "images": [
                {"bytes": b, "path": p} for b, p in zip(record.images, paths["images"], strict=True)
            ],
            "audios": [
                {"bytes": b, "path": p} for b, p in zip(record.audios, paths["audios"], strict=True)
            ],
            "augmentation": None,
        }
    ]
    for variant in chain.variants(record):
        rows.append(
            {
                "id": hashlib.sha256(f"{parent}\0{variant['copy']}".encode()).hexdigest()[:32],
                "parent_id": parent,
                "source": source,
                "messages": variant["messages"],
                "images": [{"bytes": b, "path": None} for b in variant["images"]],
                "audios": [{"bytes": b, "path": None} for b in variant["audios"]],
                "augmentation": json.dumps({"copy": variant["copy"]}),
            }
        )
    return rows


@functools.lru_cache(maxsize=4)
def _cached_chain(augment_json: str, seed: int, encoders: tuple) -> PlainChain:
    return PlainChain(json.loads(augment_json), seed=seed, encoders=Encoders(*encoders))


def _rows_from_batch(
    batch: dict[str, list], root: str, augment_json: str, seed: int, encoders: tuple
) -> list[dict]:
    chain = _cached_chain(augment_json, seed, encoders)
    out: list[dict] = []
    for i in range(len(batch["messages"])):
        images = list(batch["images"][i])
        audios = list(batch["audios"][i])
        row = {
            "messages": [dict(m) for m in batch["messages"][i]],
            "system": batch["system"][i] if "system" in batch else None,
        }
        record = MediaRecord(
            key=f"{images[0] if images else i}",
            messages=_with_system(row),
            images=[Path(root, p).read_bytes() for p in images],
            audios=[Path(root, p).read_bytes() for p in audios],
        )
        out.extend(output_rows(chain, "bench", record, {"images": images, "audios": audios}))
    return out


# -- datasets ---------------------------------------------------------------------------
def _datasets_map_fn(
    batch: dict[str, list], root: str, augment_json: str, seed: int, encoders: tuple
) -> dict:
    rows = _rows_from_batch(batch, root, augment_json, seed, encoders)
    return {key: [r[key] for r in rows] for key in rows[0]} if rows else {}


def datasets_map_job(
    jsonl: Path,
    out_dir: Path,
    cache_dir: Path,
    augment: dict[str, Any],
    num_proc: int,
    encoders: Encoders,
) -> float:
    """Return the wall seconds of `Dataset.from_json -> map(num_proc) -> save_to_disk`."""
    import datasets

    datasets.disable_progress_bars()
    start = time.perf_counter()
    ds = datasets.Dataset.from_json(str(jsonl), cache_dir=str(cache_dir))
    ds = ds.map(
        _datasets_map_fn,
        batched=True,
        num_proc=num_proc if num_proc > 1 else None,
        remove_columns=ds.column_names,
        fn_kwargs={
            "root": str(jsonl.parent),
            "augment_json": json.dumps(augment),
            "seed": 0,
            "encoders": _encoder_tuple(encoders),
        },
    )
    ds.save_to_disk(str(out_dir))
    seconds = time.perf_counter() - start
    del ds
    return seconds


# -- Ray Data, as a user would write it ---------------------------------------------------
def _naive_ray_fn(batch: dict[str, Any], root: str, augment_json: str, seed: int, encoders: tuple):
    import pyarrow as pa

    columns = {k: [_plain(v) for v in batch[k]] for k in batch}
    return pa.Table.from_pylist(_rows_from_batch(columns, root, augment_json, seed, encoders))


def _plain(value: Any) -> Any:
    """Return numpy object arrays (Ray's default batch format) as plain lists."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value]
    return value


def naive_ray_job(jsonl: Path, out_dir: Path, augment: dict[str, Any], encoders: Encoders) -> float:
    """Return the wall seconds of `read_json -> map_batches -> write_parquet` on the current Ray."""
    import ray.data

    start = time.perf_counter()
    ds = ray.data.read_json(str(jsonl), lines=True)
    ds = ds.map_batches(
        _naive_ray_fn,
        fn_kwargs={
            "root": str(jsonl.parent),
            "augment_json": json.dumps(augment),
            "seed": 0,
            "encoders": _encoder_tuple(encoders),
        },
    )
    ds.write_parquet(str(out_dir))
    return time.perf_counter() - start


def _encoder_tuple(encoders: Encoders) -> tuple:
    return (encoders.jpeg_quality, encoders.audio_format, encoders.audio_subtype)


def dir_bytes(path: Path) -> int:
    """Return the total size of the files under `path`."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
