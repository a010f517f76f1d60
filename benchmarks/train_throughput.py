"""Training throughput: our stage vs a plain transformers `Trainer`, same tiny model and data.

    .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--reps 3] [--json out.json]

Both sides train the same tiny-random Qwen2.5-Omni thinker (LoRA r=8) on the same committed
version (28x28 images + 1 s clips), with the same batch size, steps and seed:
- ours: `trainers.loop.TrainLoop` (memory-mapped shards, length plan, our Trainer
  subclass; the DataLoader fetches planned samples and our collator encodes each batch in
  one processor call, with Whisper features computed over the clips only, the same
  features: trainers/audio_features.py);
- plain: `transformers.Trainer` over the records in memory with a minimal collator that calls
  `processor.apply_chat_template(..., return_assistant_tokens_mask=True)` on each batch.
Both process media on the fly in the main process (dataloader workers 0). The
TrainingArguments that decide what a step does (batch, steps, optimizer, schedule, logging
every step, no evaluation, loader workers, integrations off: no TensorBoard on either side)
are checked equal after each pair, or the run stops. Throughput is non-padding tokens /
seconds from train start to the last optimizer step (our final checkpoint, written after it,
excluded), measured by the same callback on both sides; after one untimed 2-step run of each
side (`--no-warmup` skips it), pairs alternate which side runs first, and the figures are
medians of `--reps` pairs. The data-wait share is the share of our step time spent fetching
batches. Per step, the same clock splits each side's time into data (fetching and collating
the batch) and compute (forward, backward, optimizer, callbacks, logging), in wall and
process-CPU seconds (medians over steps): on a shared machine these say more than the ratio.
`--profile DIR` writes cProfile stats of the first pair.

Generation: the evaluation's replies (greedy, `--gen-tokens` new tokens each) for
`--replies` conversations, generated `--batch` at a time with left padding (what
evaluation does) and one at a time; replies per second for each, median of `--reps`.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

log = logging.getLogger("train_throughput")

CHARACTER = {
    "name": "Captain Vela",
    "profile": "Captain of the airship Gilded Gale. Loud, generous and superstitious.",
    "greeting": "Ahoy!",
    "catchphrases": ["By the four winds!"],
}
LINES = [
    ("What do you make of this sky?", "By the four winds, a red sky! We sail north tonight."),
    ("Should we chase that ship?", "Chase her? Merchants pay better in tea than in gold."),
    ("Listen to the wind up here.", "That gust climbs and falls: a squall line breathing."),
    ("Do we go through the storm?", "Around, always around. Trust the sky, deckhand."),
]


def _media(i: int) -> tuple[bytes, bytes]:
    import numpy as np
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(buf, "PNG")
    wav = io.BytesIO()
    sf.write(wav, (0.1 * rng.standard_normal(16000)).astype("float32"), 16000, format="WAV")
    return buf.getvalue(), wav.getvalue()


def make_records(n: int) -> list[dict[str, Any]]:
    """Return `n` train records: two exchanges, an image and a clip in the first user turn."""
    from pipeline.record.ids import original_id

    records = []
    for i in range(n):
        image, audio = _media(i)
        messages = []
        for t in range(2):
            user, reply = LINES[(i + t) % len(LINES)]
            prefix = "<image> <audio> " if t == 0 else ""
            messages.append({"role": "user", "name": "Mira", "content": f"{prefix}{user} ({i})"})
            messages.append({"role": "assistant", "name": None, "content": f"{reply} #{i}"})
        records.append(
            {
                "id": original_id("bench", str(i)),
                "parent_id": None,
                "source": "bench",
                "split": "train",
                "character": CHARACTER,
                "messages": messages,
                "images": [{"bytes": image, "path": None}],
                "audios": [{"bytes": audio, "path": None}],
                "augmentation": None,
            }
        )
    return records


def write_shard(records: list[dict[str, Any]], folder: Path) -> str:
    """Write the records as one memory-mappable Arrow shard; return its path."""
    import pyarrow as pa

    from pipeline.record.schema import RECORD_SCHEMA, records_to_table

    path = folder / "train-00000-of-00001.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, RECORD_SCHEMA) as w:
        w.write_table(records_to_table(records, RECORD_SCHEMA))
    return str(path)


# TrainingArguments that decide what a step does; both sides must agree on every one.
LIKE_FOR_LIKE = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "optim",
    "logging_steps",
    "eval_strategy",
    "dataloader_num_workers",
    "report_to",
    "bf16",
    "fp16",
    "activation_checkpointing",
    "torch_compile",
    "use_cpu",
)


def _like_for_like(trainer) -> dict[str, Any]:
    return {k: json.loads(json.dumps(getattr(trainer.args, k), default=str)) for k in LIKE_FOR_LIKE}


def check_like_for_like(ours: dict[str, Any], plain: dict[str, Any]) -> None:
    """Raise if the two sides' TrainingArguments differ in what decides a step's work."""
    differ = {k: (ours[k], plain[k]) for k in LIKE_FOR_LIKE if ours[k] != plain[k]}
    if differ:
        raise SystemExit(f"the two sides do not train alike (ours, plain): {differ}")


def _step_clock(trainer):
    """Add to `trainer` a callback that records when training began and when the last step
    ended, and per step the wall and CPU seconds spent fetching its batch (data) and the
    rest of the step (compute: forward, backward, optimizer, callbacks, logging). The same
    clock on both sides: it wraps the instance's `get_batch_samples`."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.begin = self.end = None
            self.steps: list[dict[str, float]] = []
            self._fetched: tuple[float, float, float, float] | None = None

        def timed_fetch(self, fetch):
            def get_batch_samples(*args, **kwargs):
                wall, cpu = time.perf_counter(), time.process_time()
                out = fetch(*args, **kwargs)
                self._fetched = (wall, cpu, time.perf_counter(), time.process_time())
                return out

            return get_batch_samples

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.end = time.perf_counter()
            if self._fetched is not None:
                wall, cpu, fetched_wall, fetched_cpu = self._fetched
                self.steps.append(
                    {
                        "data_wall": fetched_wall - wall,
                        "data_cpu": fetched_cpu - cpu,
                        "compute_wall": self.end - fetched_wall,
                        "compute_cpu": time.process_time() - fetched_cpu,
                    }
                )
                self._fetched = None

        def per_step(self) -> dict[str, float]:
            """Median seconds per step of each part (the median shrugs off a busy moment)."""
            return {k: statistics.median(s[k] for s in self.steps) for k in self.steps[0]}

    clock = StepClock()
    trainer.get_batch_samples = clock.timed_fetch(trainer.get_batch_samples)
    trainer.add_callback(clock)
    return clock


def _train_timed(trainer, profile: str | None) -> tuple[Any, float]:
    """Train with the step clock (under cProfile into `profile` when given); return the
    clock and the process CPU seconds the training took."""
    clock = _step_clock(trainer)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu = time.process_time()
    trainer.train()
    cpu = time.process_time() - cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    return clock, cpu


def run_ours(
    base: str,
    shard: str,
    run_dir: str,
    steps: int,
    batch: int,
    seed: int,
    workers: int = 0,
    profile: str | None = None,
) -> dict:
    from trainers.loop import TrainJob, TrainLoop

    config = {
        "lora": {"r": 8},
        "max_steps": steps,
        "batch_size": batch,
        "learning_rate": 1e-3,
        "max_length": 512,
        "use_gpu": False,
        "report_to": [],  # as the plain side: no TensorBoard events
    }
    job = TrainJob(
        run_dir=run_dir,
        base_model=base,
        shards={"train": [shard]},
        config=config,
        seed=seed,
        keep_media=["audio", "image"],
        dataloader_workers=workers,
    )
    planned = time.perf_counter()
    session = TrainLoop(job)
    setup_s = time.perf_counter() - planned
    trainer = session.trainer()
    clock, cpu = _train_timed(trainer, profile)
    times = trainer.step_times
    seconds = clock.end - clock.begin
    return {
        "tokens": times.tokens,
        "seconds": seconds,
        "tokens_per_s": times.tokens / seconds,
        "tokens_per_cpu_s": times.tokens / cpu,
        "data_wait_share": times.data_wait_seconds / times.step_seconds,
        "setup_s": setup_s,
        "per_step": clock.per_step(),
        "args": _like_for_like(trainer),
    }


def _plain_conversation(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record as processor chat messages, written the way a user of HF would."""
    import numpy as np
    import soundfile as sf
    from PIL import Image

    image = Image.open(io.BytesIO(record["images"][0]["bytes"])).convert("RGB")
    audio, _ = sf.read(io.BytesIO(record["audios"][0]["bytes"]), dtype="float32")
    char = record["character"]
    conv = [
        {
            "role": "system",
            "content": [{"type": "text", "text": f"You are {char['name']}. {char['profile']}"}],
        }
    ]
    for m in record["messages"]:
        text = f"{m['name']}: {m['content']}" if m["role"] == "user" else m["content"]
        parts: list[dict[str, Any]] = []
        for piece in re.split(r"(<image>|<audio>)", text):
            if piece == "<image>":
                parts.append({"type": "image", "image": image})
            elif piece == "<audio>":
                parts.append({"type": "audio", "audio": np.asarray(audio)})
            elif piece:
                parts.append({"type": "text", "text": piece})
        conv.append({"role": m["role"], "content": parts})
    return conv


def run_plain(
    base: str,
    records: list[dict],
    out_dir: str,
    steps: int,
    batch: int,
    seed: int,
    profile: str | None = None,
) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        Trainer,
        TrainingArguments,
    )

    processor = AutoProcessor.from_pretrained(base)
    model = AutoModelForImageTextToText.from_pretrained(base, use_safetensors=True)
    targets = [
        n
        for n, m in model.named_modules()
        if n.startswith("model.language_model.") and isinstance(m, torch.nn.Linear)
    ]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_peft_model(
            model,
            LoraConfig(
                r=8, lora_alpha=16, lora_dropout=0.05, target_modules=targets, task_type="CAUSAL_LM"
            ),
        )
    batch_tokens: list[int] = []

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch_out = processor.apply_chat_template(
            [_plain_conversation(r) for r in rows],
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "right"},
        )
        mask = batch_out.pop("assistant_masks").bool()
        labels = batch_out["input_ids"].masked_fill(~mask, -100)
        batch_tokens.append(int(batch_out["attention_mask"].sum()))
        return {**batch_out, "labels": labels}

    args = TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=1e-3,
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=True,
        seed=seed,
        data_seed=seed,
    )
    trainer = Trainer(model=model, args=args, train_dataset=records, data_collator=collate)
    clock, cpu = _train_timed(trainer, profile)
    seconds = clock.end - clock.begin
    # accelerate's loader collates one batch ahead; count only the batches trained on.
    tokens = sum(batch_tokens[:steps])
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "tokens_per_cpu_s": tokens / cpu,
        "per_step": clock.per_step(),
        "args": _like_for_like(trainer),
    }


def run_generation(base: str, shard: str, replies: int, batch: int, new_tokens: int) -> dict:
    """Return replies/s of the evaluation's generation, batched and one prompt at a time."""
    from trainers.chat import ChatFormatter
    from trainers.collator import RolePlayCollator
    from trainers.data import RolePlayDataset, SplitReader
    from trainers.encoding import ConversationEncoder
    from trainers.evaluate import TestEvaluator
    from trainers.heldout import Weights, load_weights
    from trainers.loop import _forward_inputs

    model, processor, spec = load_weights(Weights(base, None, base))
    encoder = ConversationEncoder(processor, multimodal=spec.multimodal, max_length=512)
    formatter = ChatFormatter("You are {name}. {profile}", keep=frozenset({"image", "audio"}))
    data = RolePlayDataset("test", SplitReader([shard]), formatter, encoder)
    collator = RolePlayCollator(encoder.tokenizer.pad_token_id, accepted=_forward_inputs(model))
    evaluator = TestEvaluator(model, data, collator, batch, replies, new_tokens)
    inputs = [built for _, built, _ in evaluator.prompts_to_answer()]
    out = {}
    for label, size in (("batched", batch), ("one_at_a_time", 1)):
        evaluator.batch_size = size
        started = time.perf_counter()
        evaluator.generate(inputs)
        out[label] = len(inputs) / (time.perf_counter() - started)
    return out


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "samples": [round(v, 4) for v in values],
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--batch", type=int, default=4, help="batch size")
    parser.add_argument("--records", type=int, default=48, help="train records")
    parser.add_argument("--reps", type=int, default=3, help="ours/plain pairs (median)")
    parser.add_argument(
        "--threads", type=int, help="torch threads for both sides (default: torch's choice)"
    )
    parser.add_argument(
        "--loader-workers",
        type=int,
        default=0,
        help="also time ours with this many DataLoader workers (0: skip)",
    )
    parser.add_argument("--replies", type=int, default=16, help="replies per generation run")
    parser.add_argument("--gen-tokens", type=int, default=16, help="new tokens per reply")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 steps, 1 pair")
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the untimed 2-step run of each side before the timed pairs",
    )
    parser.add_argument(
        "--profile", help="write cProfile stats of the first pair here (ours.prof, plain.prof)"
    )
    parser.add_argument("--json", dest="json_path", help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.reps, args.records = 6, 1, 16
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("trainers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    from trainers.tiny import build_tiny_omni

    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="roleforge-train-bench-") as tmp:
        root = Path(tmp)
        records = make_records(args.records)
        shard = write_shard(records, root)
        texts = [
            m["content"].replace("<image> <audio> ", "") for r in records for m in r["messages"]
        ]
        base = build_tiny_omni(texts, str(root / "base"), seed=0)
        ours, plain, overlapped, generation = [], [], [], []
        if args.warmup:
            # One short untimed run of each side first: the process's one-time costs (kernel
            # and allocator set-up, lazy imports) are nobody's throughput.
            run_ours(base, shard, str(root / "warm-ours"), 2, args.batch, 0)
            run_plain(base, records, str(root / "warm-plain"), 2, args.batch, 0)
        for rep in range(args.reps):
            generation.append(
                run_generation(base, shard, args.replies, args.batch, args.gen_tokens)
            )
            profile = (
                {s: os.path.join(args.profile, f"{s}.prof") for s in ("ours", "plain")}
                if args.profile and rep == 0
                else {}
            )
            if profile:
                os.makedirs(args.profile, exist_ok=True)
            sides = {
                "ours": partial(
                    run_ours, base, shard, str(root / f"ours{rep}"), profile=profile.get("ours")
                ),
                "plain": partial(
                    run_plain,
                    base,
                    records,
                    str(root / f"plain{rep}"),
                    profile=profile.get("plain"),
                ),
            }
            # Which side runs first alternates, so neither always meets a cold process.
            order = ("ours", "plain") if rep % 2 == 0 else ("plain", "ours")
            done = {side: sides[side](args.steps, args.batch, rep) for side in order}
            ours.append(done["ours"])
            plain.append(done["plain"])
            check_like_for_like(ours[-1]["args"], plain[-1]["args"])
            if args.loader_workers:
                overlapped.append(
                    run_ours(
                        base,
                        shard,
                        str(root / f"workers{rep}"),
                        args.steps,
                        args.batch,
                        rep,
                        args.loader_workers,
                    )
                )
            o, p = ours[-1]["per_step"], plain[-1]["per_step"]
            log.info(
                "rep %d: ours %.0f tok/s (wait %.0f%%, %.0f tok/cpu-s), plain %.0f tok/s "
                "(%.0f tok/cpu-s); per step, data/compute wall s: ours %.3f/%.3f, plain "
                "%.3f/%.3f; CPU s: ours %.3f/%.3f, plain %.3f/%.3f",
                rep,
                ours[-1]["tokens_per_s"],
                100 * ours[-1]["data_wait_share"],
                ours[-1]["tokens_per_cpu_s"],
                plain[-1]["tokens_per_s"],
                plain[-1]["tokens_per_cpu_s"],
                o["data_wall"],
                o["compute_wall"],
                p["data_wall"],
                p["compute_wall"],
                o["data_cpu"],
                o["compute_cpu"],
                p["data_cpu"],
                p["compute_cpu"],
            )
    ratios = [o["tokens_per_s"] / p["tokens_per_s"] for o, p in zip(ours, plain, strict=True)]
    cpu_ratios = [
        o["tokens_per_cpu_s"] / p["tokens_per_cpu_s"] for o, p in zip(ours, plain, strict=True)
    ]
    report = {
        "trainer_vs_hf_trainer": _summary(ratios),
        "cpu_time_ratio": _summary(cpu_ratios),
        "data_wait_share": _summary([o["data_wait_share"] for o in ours]),
        "ours_tokens_per_s": _summary([o["tokens_per_s"] for o in ours]),
        "hf_trainer_tokens_per_s": _summary([p["tokens_per_s"] for p in plain]),
        "ours_setup_s": _summary([o["setup_s"] for o in ours]),
        **(
            {
                "ours_with_loader_workers_tokens_per_s": _summary(
                    [o["tokens_per_s"] for o in overlapped]
                ),
                "ours_with_loader_workers_data_wait_share": _summary(
                    [o["data_wait_share"] for o in overlapped]
                ),
            }
            if overlapped
            else {}
        ),
        "generation_replies_per_s": {
            "batched": _summary([g["batched"] for g in generation]),
            "one_at_a_time": _summary([g["one_at_a_time"] for g in generation]),
            "speedup": _summary([g["batched"] / g["one_at_a_time"] for g in generation]),
        },
        "per_step_seconds": {
            side: {
                part: _summary([r["per_step"][part] for r in runs])
                for part in ("data_wall", "compute_wall", "data_cpu", "compute_cpu")
            }
            for side, runs in (("ours", ours), ("hf_trainer", plain))
        },
        "tokens_per_run": {"ours": ours[0]["tokens"], "hf_trainer": plain[0]["tokens"]},
        "like_for_like": ours[0]["args"],
        "settings": {
            "steps": args.steps,
            "batch": args.batch,
            "records": args.records,
            "reps": args.reps,
            "loader_workers": args.loader_workers,
            "replies": args.replies,
            "gen_tokens": args.gen_tokens,
            "warmup": args.warmup,
            "threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
        },
    }
    print(
        f"tokens/s ours {report['ours_tokens_per_s']['median']:.0f}, plain Trainer "
        f"{report['hf_trainer_tokens_per_s']['median']:.0f}, ratio "
        f"{report['trainer_vs_hf_trainer']['median']:.3f} (target >= 0.95), per CPU second "
        f"{report['cpu_time_ratio']['median']:.3f}; data-wait share "
        f"{report['data_wait_share']['median']:.1%}"
    )
    steps = report["per_step_seconds"]
    print(
        "median seconds per step, data + compute: wall ours "
        + " + ".join(f"{steps['ours'][k]['median']:.3f}" for k in ("data_wall", "compute_wall"))
        + ", plain "
        + " + ".join(
            f"{steps['hf_trainer'][k]['median']:.3f}" for k in ("data_wall", "compute_wall")
        )
        + "; CPU ours "
        + " + ".join(f"{steps['ours'][k]['median']:.3f}" for k in ("data_cpu", "compute_cpu"))
        + ", plain "
        + " + ".join(f"{steps['hf_trainer'][k]['median']:.3f}" for k in ("data_cpu", "compute_cpu"))
        + f"; load average {os.getloadavg()[0]:.1f}"
    )
    gen = report["generation_replies_per_s"]
    print(
        f"replies/s batched ({args.batch}) {gen['batched']['median']:.2f}, one at a time "
        f"{gen['one_at_a_time']['median']:.2f}, speedup {gen['speedup']['median']:.2f}x"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
