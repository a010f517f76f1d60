"""The training stage: a committed dataset version in, a fine-tuned model folder out.

Layout of one run, `<store>/<name>/models/<run_id>/`:
  run.json              dataset (name, version, content_id), config, seed, base model, status
  base_model/           tiny-random only: the built base model and processor
  checkpoints/          Trainer checkpoints (what --resume continues from)
  adapter_model.safetensors + adapter_config.json   (LoRA) or model.safetensors + config.json
  processor / tokenizer files, train_summary.json, eval.json, eval.md, README.md (model card)

`resume=True` continues the newest run of the same dataset version that has a checkpoint
(newest by the creation time in run.json), or the run named by `run_id`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.store.read import Store
from trainers.card import eval_markdown, model_card
from trainers.config import TrainConfig
from trainers.loop import CHECKPOINTS, TrainingSession, TrainJob, write_json
from trainers.models import ANY_TO_TEXT, ModelSpec, check_modalities, resolve_model
from trainers.tiny import TINY_RANDOM

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
BASE_DIR = "base_model"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class NothingToResume(LookupError):
    """--resume found no run of this dataset version with a checkpoint."""


@dataclass
class TrainResult:
    """What a training run produced; `to_dict()` is the `roleforge train --json` object."""

    model_path: str
    run_id: str
    dataset: dict[str, Any]
    train_loss_first: float | None
    train_loss_last: float | None
    eval: dict[str, Any]
    global_step: int = 0
    resumed_from: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "run_id": self.run_id,
            "dataset": self.dataset,
            "train_loss_first": self.train_loss_first,
            "train_loss_last": self.train_loss_last,
            "global_step": self.global_step,
            "resumed_from": self.resumed_from,
            "data": self.data,
            "eval": self.eval,
        }


def last_checkpoint(run_dir: str) -> str | None:
    """Return the checkpoint with the highest step in a run folder, or None."""
    folder = os.path.join(run_dir, CHECKPOINTS)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return None
    steps = [
        (int(m.group(1)), n)
        for n in names
        if (m := _CHECKPOINT.match(n))
        and os.path.isfile(os.path.join(folder, n, "trainer_state.json"))
    ]
    return os.path.join(folder, max(steps)[1]) if steps else None


def find_resumable_run(store: Store, version: int, run_id: str | None = None) -> str:
    """Return the run folder --resume continues: `run_id`, else the newest with a checkpoint."""
    root = os.path.join(store.root, "models")
    candidates = [run_id] if run_id else (os.listdir(root) if os.path.isdir(root) else [])
    best: tuple[float, str] | None = None
    for rid in candidates:
        run_dir = os.path.join(root, rid)
        try:
            with open(os.path.join(run_dir, RUN_FILE), encoding="utf-8") as f:
                info = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            continue
        same = info["dataset"]["name"] == store.name and info["dataset"]["version"] == version
        if same and last_checkpoint(run_dir) and (best is None or info["created"] > best[0]):
            best = (info["created"], run_dir)
    if best is None:
        which = f"run {run_id!r}" if run_id else "no run"
        raise NothingToResume(
            f"{which} of {store.name}@v{version} in {root} has a checkpoint to resume from"
        )
    return best[1]


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _config_from_manifest(manifest: dict[str, Any]) -> TrainConfig:
    section = (manifest.get("recipe") or {}).get("train")
    return TrainConfig.model_validate(section) if section else TrainConfig()


def _tiny_spec(path: str) -> ModelSpec:
    cls, media = ANY_TO_TEXT["qwen2_5_omni_thinker"]
    return ModelSpec(path, "any-to-text", cls, media, "qwen2_5_omni_thinker")


def _corpus_texts(shards: list[str], system_template: str) -> list[str]:
    """Return the text a tiny-random tokenizer is trained on: train turns, placeholders removed."""
    from trainers.chat import ChatFormatter
    from trainers.data import SplitReader

    reader = SplitReader(shards)
    formatter = ChatFormatter(system_template, keep=frozenset())
    texts = []
    for i in range(len(reader)):
        texts += [t.text for t in formatter.format(reader.row(i)).turns]
    return texts or ["hello"]


def _check_model_takes_data(
    cfg: TrainConfig, base_model: str, shards: dict[str, list[str]], label: str
) -> frozenset[str]:
    """Return the media kinds to keep; raise ModalityMismatch before any weights load."""
    from trainers.data import SplitReader

    tiny = cfg.model == TINY_RANDOM
    spec = _tiny_spec(base_model) if tiny else resolve_model(cfg.model, cfg.trust_remote_code)
    counts: dict[str, int] = {"image": 0, "audio": 0}
    for paths in shards.values():
        for kind, n in SplitReader(paths).media_counts().items():
            counts[kind] += n
    return check_modalities(spec, counts, cfg.drop_media, label)


def train_version(
    store_uri: str,
    name: str,
    version: int | None,
    cfg: TrainConfig | None = None,
    seed: int | None = None,
    resume: bool = False,
    run_id: str | None = None,
) -> TrainResult:
    """Fine-tune on a committed version (the latest when `version` is None); return the result.

    `cfg` None means the manifest recipe's `train:` section (defaults without one) and, on
    resume, the resumed run's own config. The seed is cfg.seed, else `seed`, else the
    manifest recipe's seed. Fails before loading weights when the data has media the model
    cannot take (unless drop_media).
    """
    store = Store(store_uri, name)
    manifest = store.checked_manifest(version)
    version = manifest["version"]
    label = f"{name}@v{version}"
    resumed_from = None
    if resume:
        run_dir = find_resumable_run(store, version, run_id)
        with open(os.path.join(run_dir, RUN_FILE), encoding="utf-8") as f:
            info = json.load(f)
        saved = TrainConfig.model_validate(info["config"])
        if cfg is not None and cfg != saved:
            logger.warning("resuming with a config that differs from the run's own")
        cfg = cfg or saved
        seed = info["seed"]
        resumed_from = last_checkpoint(run_dir)
        run_id = os.path.basename(run_dir)
        logger.info("resuming %s from %s", run_id, resumed_from)
    else:
        cfg = cfg or _config_from_manifest(manifest)
        if cfg.seed is not None:
            seed = cfg.seed
        elif seed is None:
            seed = int((manifest.get("recipe") or {}).get("seed") or 0)
        run_id = run_id or _new_run_id()
        run_dir = store.models_dir(run_id)

    shards = {s: store.shard_paths(manifest, s) for s in ("train", "validation", "test")}
    tiny = cfg.model == TINY_RANDOM
    base_model = os.path.join(run_dir, BASE_DIR) if tiny else cfg.model
    keep = _check_model_takes_data(cfg, base_model, shards, label)

    if not resume:
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        os.mkdir(run_dir)  # exclusive: two runs never share a folder
        info = {
            "run_id": run_id,
            "created": time.time(),
            "dataset": {"name": name, "version": version, "content_id": manifest["content_id"]},
            "recipe_hash": manifest.get("recipe_hash"),
            "config": cfg.model_dump(mode="json"),
            "seed": seed,
        }
    if tiny and not os.path.isdir(base_model):
        from trainers.tiny import build_tiny_omni

        build_tiny_omni(_corpus_texts(shards["train"], cfg.system_template), base_model, seed)
    info.update(
        base_model=base_model, keep_media=sorted(keep), status="training", updated=time.time()
    )
    write_json(os.path.join(run_dir, RUN_FILE), info)

    job = TrainJob(
        run_dir=run_dir,
        base_model=base_model,
        shards=shards,
        config=cfg.model_dump(mode="json"),
        seed=seed,
        keep_media=sorted(keep),
        resume_from=resumed_from,
    )
    if cfg.workers > 1:
        from trainers.distributed import run_on_ray

        summary = run_on_ray(job, cfg.workers)
        evaluation = _evaluate_saved(job)
    else:
        session = TrainingSession(job)
        summary = session.run()
        evaluation = _evaluate(session, session.trained, cfg)

    write_json(os.path.join(run_dir, "eval.json"), evaluation)
    with open(os.path.join(run_dir, "eval.md"), "w", encoding="utf-8") as f:
        f.write(eval_markdown(evaluation, f"{label}, run {run_id}"))
    card = model_card(
        run_id=run_id,
        manifest=manifest,
        base_model=cfg.model,
        tiny_random=tiny,
        config=cfg.model_dump(mode="json"),
        seed=seed,
        summary=summary,
        evaluation=evaluation,
    )
    with open(os.path.join(run_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)
    info.update(status="done", updated=time.time())
    write_json(os.path.join(run_dir, RUN_FILE), info)

    losses = summary.get("losses") or []
    brief = {k: v for k, v in evaluation.items() if k != "replies"}
    return TrainResult(
        model_path=run_dir,
        run_id=run_id,
        dataset={"name": name, "version": version, "content_id": manifest["content_id"]},
        train_loss_first=losses[0]["loss"] if losses else None,
        train_loss_last=losses[-1]["loss"] if losses else None,
        eval=brief,
        global_step=summary.get("global_step", 0),
        resumed_from=resumed_from,
        data=summary.get("data", {}),
    )


def _evaluate(session: TrainingSession, model: Any, cfg: TrainConfig) -> dict[str, Any]:
    from trainers.evaluate import TestEvaluator

    test = session.dataset("test")
    evaluator = TestEvaluator(
        model, test, session.collator, cfg.batch_size, cfg.eval_prompts, cfg.max_new_tokens
    )
    return evaluator.run()


def _evaluate_saved(job: TrainJob) -> dict[str, Any]:
    """Evaluate the model a distributed run saved, loaded back from the run folder."""
    from trainers.chat import ChatFormatter
    from trainers.collator import RolePlayCollator
    from trainers.data import RolePlayDataset, SplitReader
    from trainers.encoding import ConversationEncoder
    from trainers.evaluate import TestEvaluator
    from trainers.loop import _forward_inputs

    cfg = job.cfg
    model, processor, spec = load_trained(job.run_dir, job.base_model, cfg)
    encoder = ConversationEncoder(processor, multimodal=spec.multimodal, max_length=cfg.max_length)
    formatter = ChatFormatter(cfg.system_template, keep=frozenset(job.keep_media))
    test = RolePlayDataset("test", SplitReader(job.shards.get("test", [])), formatter, encoder)
    collator = RolePlayCollator(encoder.tokenizer.pad_token_id, accepted=_forward_inputs(model))
    return TestEvaluator(
        model, test, collator, cfg.batch_size, cfg.eval_prompts, cfg.max_new_tokens
    ).run()


def load_trained(run_dir: str, base_model: str, cfg: TrainConfig):
    """Return (model, processor, spec) of a finished run: base + adapter, or full weights."""
    from trainers.models import load_model, load_processor

    if cfg.lora is not None:
        from peft import PeftModel

        spec = resolve_model(base_model, cfg.trust_remote_code)
        model = PeftModel.from_pretrained(load_model(spec, cfg.trust_remote_code), run_dir)
    else:
        spec = resolve_model(run_dir, cfg.trust_remote_code)
        model = load_model(spec, cfg.trust_remote_code)
    # The run folder holds the processor as trained (for tiny-random, its own tokenizer).
    processor = load_processor(replace(spec, name=run_dir), cfg.trust_remote_code)
    return model, processor, spec
