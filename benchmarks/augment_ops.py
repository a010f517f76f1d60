"""Per-op throughput: our augmenter vs. the bare library call on the same input.

    python benchmarks/augment_ops.py [--records N] [--reps 3] [--json PATH] [--only NAME ...]

Inputs: a 512x512 JPEG, a 5 s 16 kHz mono clip, a ~30-word user turn. Two measurements
per op, each over `--reps` repetitions in which the two sides alternate call by call
(ours, bare, ours, bare..., so that machine drift hits both alike); rates are medians, the
ratio is the median of the per-repetition ratios ours/bare:

Times are CPU seconds of this process (`time.process_time`) with OpenCV on one thread:
records per CPU-second on one core, the unit of the execution settings' measurements (docs/ARCHITECTURE.md), and far less disturbed
by other work on the machine than wall time. The script re-executes itself with the
malloc settings the pipeline uses (pipeline/execution/cluster.py: WORKER_ENV) when they are not set.

- kernel: the op alone on decoded input. Ours = draw (seeded parameters, recorded as
  JSON-able params) + apply; bare = the library transform called with p=1
  (`transform(image=img)`, `transform(samples, sr)`, `aug.augment(text)`). Ours runs inside one
  `global_random_scope` per repetition (one save/restore of the global RNG states), as
  the augment stage runs a batch; each call still seeds them.
- record: one whole variant through `RecordAugmenter.variants` for a one-op recipe, the
  records of a repetition inside one `RecordAugmenter.batch()` as the augment stage runs them
  (decode + op + encode + the variant dict with its augmentation log) vs. the bare
  pipeline a user would write: decode + library call + encode (cv2 JPEG q95 / FLAC).
  Decode and encode are included on both sides.

The overhead target (within 10% for image and audio ops) is about the record column:
the kernel column of ops that take a few microseconds (Gain, HorizontalFlip at small
sizes) is dominated by fixed costs of any per-call seeding.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from augmenters import RecordAugmenter  # noqa: E402
from augmenters.config import AugmentConfig  # noqa: E402
from augmenters.randomness import global_random_scope  # noqa: E402
from augmenters.registry import build_op  # noqa: E402

RATE = 16000
TEXT = (
    "Hey, could you look at this old photo of my grandmother's house and tell me "
    "what you think the little garden was like in spring when the trees were young?"
)

IMAGE_OPS = [
    {"op": "HorizontalFlip", "p": 1.0},
    {"op": "RandomResizedCrop", "size": [224, 224], "scale": [0.6, 1.0]},
    {"op": "ColorJitter", "p": 1.0},
    {"op": "GaussNoise", "p": 1.0},
    {"op": "Rotate", "limit": 15, "p": 1.0},
    {"op": "RandomBrightnessContrast", "p": 1.0},
]
AUDIO_OPS = [
    {"op": "Gain", "p": 1.0},
    {"op": "AddGaussianNoise", "p": 1.0},
    {"op": "Shift", "p": 1.0},
    {"op": "SpeedPerturb", "factors": [0.9, 1.1]},
    {"op": "PitchShift", "p": 1.0},
]
TEXT_OPS = [
    {"op": "KeyboardAug", "p": 1.0},
    {"op": "OcrAug", "p": 1.0},
    {"op": "RandomCharAug", "action": "substitute", "p": 1.0},
    {"op": "RandomWordAug", "action": "swap", "p": 1.0},
    {"op": "SplitAug", "p": 1.0},
    {"op": "SpellingAug", "p": 1.0},
    {"op": "SynonymAug", "p": 1.0},
]
# Phase-vocoder ops run at ~50 clips/s: fewer records keep the run short.
SLOW = {"PitchShift": 0.1, "TimeStretch": 0.1}


def make_jpeg() -> bytes:
    import cv2

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:512, 0:512]
    image = np.stack([x / 2, y / 2, (x + y) / 4], axis=-1)
    cv2.circle(image, (300, 200), 90, (250, 180, 40), -1)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def make_wav() -> bytes:
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(5 * RATE) / RATE
    samples = 0.3 * np.sin(2 * np.pi * 220 * t) * (
        1 + 0.5 * np.sin(2 * np.pi * 3 * t)
    ) + rng.normal(0, 0.01, t.size)
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def record_for(modality: str, jpeg: bytes, wav: bytes) -> dict[str, Any]:
    content = {"image": "<image> " + TEXT, "audio": "<audio> " + TEXT, "text": TEXT}[modality]
    return {
        "id": "bench",
        "parent_id": None,
        "source": "bench",
        "split": "train",
        "character": {"name": "Nova", "profile": "", "greeting": "", "catchphrases": []},
        "messages": [
            {"role": "user", "name": None, "content": content},
            {"role": "assistant", "name": None, "content": "Sure."},
        ],
        "images": [{"bytes": jpeg, "path": "a.jpg"}] if modality == "image" else [],
        "audios": [{"bytes": wav, "path": "a.wav"}] if modality == "audio" else [],
        "augmentation": None,
        "source_ref": "bench:1",
    }


def compare(
    ours: Callable[[int], Any],
    bare: Callable[[int], Any] | None,
    n: int,
    reps: int,
    ours_context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> tuple[float, float | None, float | None]:
    """Return (ours/s, bare/s, ratio) in calls per CPU-second: medians over `reps` repetitions.

    Within a repetition the two sides alternate call by call (ours(i), bare(i), ...), so
    drift on any timescale above a few milliseconds hits both alike.
    """
    with ours_context():
        ours(0)
        if bare:
            bare(0)
    mine, theirs, ratios = [], [], []
    clock = time.process_time
    for _ in range(reps):
        t_ours = t_bare = 0.0
        with ours_context():
            for i in range(n):
                t0 = clock()
                ours(i)
                t1 = clock()
                if bare:
                    bare(i)
                t_ours += t1 - t0
                t_bare += clock() - t1
        mine.append(n / t_ours)
        if bare:
            theirs.append(n / t_bare)
            ratios.append(t_bare / t_ours)
    if not bare:
        return statistics.median(mine), None, None
    return statistics.median(mine), statistics.median(theirs), statistics.median(ratios)


# --- bare library calls -------------------------------------------------------------------


def bare_image(spec: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    import albumentations as A

    args = {k: v for k, v in spec.items() if k not in ("op", "p")}
    transform = getattr(A, spec["op"])(**args, p=1.0)
    return lambda img: transform(image=img)["image"]


def bare_audio(spec: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    if spec["op"] == "SpeedPerturb":
        import soxr

        factors = spec.get("factors", [0.9, 1.1])
        calls = iter(range(1 << 62))
        # Alternate the factors: the work (output length) then matches ours on average.
        return lambda x: soxr.resample(
            x, RATE * factors[next(calls) % len(factors)], RATE, quality="HQ"
        )
    import audiomentations as AM

    args = {k: v for k, v in spec.items() if k not in ("op", "p")}
    transform = getattr(AM, spec["op"])(**args, p=1.0)
    return lambda x: transform(x, RATE)


def bare_text(spec: dict[str, Any]) -> Callable[[str], Any] | None:
    args = {k: v for k, v in spec.items() if k not in ("op", "p", "roles")}
    name = spec["op"]
    if name in ("KeyboardAug", "OcrAug", "RandomCharAug"):
        import nlpaug.augmenter.char as nac

        aug = getattr(nac, name)(**args)
    elif name in ("RandomWordAug", "SplitAug", "SpellingAug"):
        import nlpaug.augmenter.word as naw  # ~8 s import; only the benchmark pays it

        aug = getattr(naw, name)(**args)
    else:
        return None  # nlpaug's SynonymAug needs nltk tagger data that cannot be had offline
    return lambda text: aug.augment(text)


# --- one op --------------------------------------------------------------------------------


def bench_op(
    modality: str, spec: dict[str, Any], jpeg: bytes, wav: bytes, n: int, reps: int
) -> dict[str, Any]:
    import cv2
    import soundfile as sf

    from augmenters.audio import decode_clip
    from augmenters.image import decode_image

    n = max(3, int(n * SLOW.get(spec["op"], 1.0)))
    op = build_op(modality, 0, spec)
    rngs = [np.random.default_rng(i) for i in range(n)]
    row: dict[str, Any] = {"modality": modality, "op": spec["op"], "records": n}

    if modality == "image":
        image = decode_image(jpeg)
        bare = bare_image(spec)

        def ours_kernel(i: int) -> Any:
            return op.apply(image, op.draw(rngs[i], image))

        def bare_kernel(i: int) -> Any:
            return bare(image)

        def bare_record(i: int) -> Any:  # the same codec calls as ours: cv2, JPEG quality 95
            pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR_RGB)
            out = cv2.cvtColor(bare(pixels), cv2.COLOR_RGB2BGR)
            return cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()

    elif modality == "audio":
        clip = decode_clip(wav)
        bare = bare_audio(spec)

        def ours_kernel(i: int) -> Any:
            params = op.draw(rngs[i], clip)
            return op.apply(clip, params) if params else clip

        def bare_kernel(i: int) -> Any:
            return bare(clip.samples)

        def bare_record(i: int) -> Any:
            samples, sr = sf.read(io.BytesIO(wav), dtype="float32")
            buf = io.BytesIO()
            sf.write(buf, np.clip(bare(samples), -1, 1), sr, format="FLAC", subtype="PCM_16")
            return buf.getvalue()

    else:
        bare_fn = bare_text(spec)
        pattern = None

        def ours_kernel(i: int) -> Any:
            return op.draw(rngs[i], TEXT, pattern)

        bare_kernel = (lambda i: bare_fn(TEXT)) if bare_fn else None
        bare_record = bare_kernel

    augmenter = RecordAugmenter(
        AugmentConfig(copies=1, **{modality: [spec]}), seed=0, recipe_hash="bench"
    )
    records = [{**record_for(modality, jpeg, wav), "id": f"bench-{i}"} for i in range(n)]

    def ours_record(i: int) -> Any:
        return augmenter.variants(records[i])

    # Audio and nlpaug ops run inside one global-RNG scope per batch, as in the stage.
    row["kernel_ours"], row["kernel_bare"], row["kernel_ratio"] = compare(
        ours_kernel, bare_kernel, n, reps, global_random_scope
    )
    # As the augment stage runs it: one batch() (one global-RNG save/restore) per batch of records.
    row["record_ours"], row["record_bare"], row["record_ratio"] = compare(
        ours_record, bare_record, n, reps, augmenter.batch
    )
    return row


def table(rows: list[dict[str, Any]]) -> str:
    def f(v: float | None, fmt: str = ",.0f") -> str:
        return "n/a" if v is None else format(v, fmt)

    head = "| op | records | kernel ours/s | kernel bare/s | kernel ratio | record ours/s | record bare/s | record ratio |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(
            f"| {r['modality']}:{r['op']} | {r['records']} | {f(r['kernel_ours'])} | {f(r['kernel_bare'])} | "
            f"{f(r['kernel_ratio'], '.2f')} | {f(r['record_ours'])} | {f(r['record_bare'])} | {f(r['record_ratio'], '.2f')} |"
        )
    return "\n".join(lines)


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "16777216", "MALLOC_TRIM_THRESHOLD_": "268435456"}


def main(argv: list[str] | None = None) -> int:
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        # glibc reads these only at start-up.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    import cv2

    cv2.setNumThreads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--records", type=int, default=100, help="records per measurement (slow ops use fewer)"
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="interleaved repetitions; the median counts"
    )
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--only", nargs="*", help="op names to run (default: all)")
    args = parser.parse_args(argv)

    jpeg, wav = make_jpeg(), make_wav()
    rows = []
    for modality, specs in (("image", IMAGE_OPS), ("audio", AUDIO_OPS), ("text", TEXT_OPS)):
        for spec in specs:
            if args.only and spec["op"] not in args.only:
                continue
            rows.append(bench_op(modality, spec, jpeg, wav, args.records, args.reps))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    media = [r for r in rows if r["modality"] in ("image", "audio")]
    worst = min((r["record_ratio"] for r in media if r["record_ratio"]), default=None)
    if worst is not None:
        print(f"\nimage/audio record-level overhead: worst ratio {worst:.3f} (target >= 0.90)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "records": args.records, "reps": args.reps}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
