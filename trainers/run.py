"""A training run: a committed dataset version in, a fine-tuned model folder out.

Layout of one run, `<store>/<name>/models/<run_id>/`:
  run.json              dataset (name, version, content_id), config, seed, base model, status
  base_model/           built models only (tiny-random, scratch-small): the base and processor
  checkpoints/          Trainer checkpoints (what --resume continues from)
  adapter_model.safetensors + adapter_config.json   (LoRA) or model.safetensors + config.json
  processor / tokenizer files, train_summary.json, eval.json, eval.md, README.md (model card)

`resume=True` continues the newest run of the same dataset version that has a checkpoint
(newest by the creation time in run.json), or the run named by `run_id`.

On an object store the run works in a local folder (trainers.mirror) and its files are
uploaded to that layout when it finishes, run.json with status `done` last; checkpoints stay
in the local folder, so --resume continues a run on the machine that ran it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.record.ids import new_run_id
from pipeline.store.read import Store
from trainers.card import eval_markdown, model_card
from trainers.config import TrainConfig, train_config_of
from trainers.loop import (
    CHECKPOINTS,
    TrainJob,
    TrainLoop,
    check_trainer_arguments,
    write_json,
)
from trainers.mirror import ModelMirror
from trainers.mixture import check_mixture
from trainers.models import (
    ANY_TO_TEXT,
    ModelSpec,
    check_modalities,
    quantization_config,
    resolve_model,
)
from trainers.presets import built_model

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
BASE_DIR = "base_model"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class NothingToResume(LookupError):
    """--resume found no run of this dataset version with a checkpoint."""


@dataclass
class TrainResult:
    """What a training run produced; `to_dict()` is the `roleforge train --json` object."""

    model_path: str  # the run folder as a user names it (a local path or s3://...)
    work_dir: str  # the run folder on this machine (model_path itself on a local store)
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
    """Return the local run folder --resume continues: `run_id`, else the newest with a
    checkpoint (on an object store, among the runs this machine worked on)."""
    root = ModelMirror(store).local_root
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


def _built_spec(path: str, multimodal: bool) -> ModelSpec:
    """Return the spec of a model roleforge builds: the Omni thinker, or a Qwen3 causal LM."""
    if not multimodal:
        return ModelSpec(path, "causal-lm", "AutoModelForCausalLM", frozenset(), "qwen3")
    cls, media = ANY_TO_TEXT["qwen2_5_omni_thinker"]
    return ModelSpec(path, "any-to-text", cls, media, "qwen2_5_omni_thinker")


def _media_counts(shards: dict[str, list[str]], fs: Any = None) -> dict[str, int]:
    """Return how many records of all splits carry images and audio."""
    from trainers.data import SplitReader

    counts: dict[str, int] = {"image": 0, "audio": 0}
    for paths in shards.values():
        for kind, n in SplitReader(paths, fs).media_counts().items():
            counts[kind] += n
    return counts


def _corpus_texts(shards: list[str], system_template: str, fs: Any = None) -> list[str]:
    """Return the text a built model's tokenizer is trained on: train turns, no placeholders."""
    from trainers.chat import ChatFormatter
    from trainers.data import SplitReader

    reader = SplitReader(shards, fs)
    formatter = ChatFormatter(system_template, keep=frozenset())
    texts = []
    for i in range(len(reader)):
        texts += [t.text for t in formatter.format(reader.row(i)).turns]
    return texts or ["hello"]


def _check_model_takes_data(
    cfg: TrainConfig, base_model: str, shards: dict[str, list[str]], label: str, fs: Any = None
) -> frozenset[str]:
    """Return the media kinds to keep; raise ModalityMismatch before any weights load.

    A built model is built for the data: an Omni thinker when any record has media (unless
    drop_media), a causal LM when none has."""
    counts = _media_counts(shards, fs)
    if built_model(cfg.model) is not None:
        spec = _built_spec(base_model, any(counts.values()) and not cfg.drop_media)
    else:
        spec = resolve_model(cfg.model, cfg.trust_remote_code)
    return check_modalities(spec, counts, cfg.drop_media, label)


class TrainRun:
    """One training run, in the order torchtune's recipes read: setup, train, evaluate, outputs.

    `setup` resolves the version, the config and the seed, checks that the model takes
    the data and that the config makes valid TrainingArguments (all before any weights
    load), and creates the run folder; `train` runs one process or Ray Train workers;
    `evaluate` scores the test split; `write_outputs` writes eval, card and final status.
    """

    def __init__(
        self,
        store_uri: str | Store,
        name: str,
        version: int | None,
        cfg: TrainConfig | None = None,
        seed: int | None = None,
        resume: bool = False,
        run_id: str | None = None,
    ):
        if isinstance(store_uri, Store):  # its filesystem kept (an endpoint, credentials)
            self.store = Store(store_uri.path, name, store_uri.fs)
        else:
            self.store = Store(store_uri, name)
        self.mirror = ModelMirror(self.store)
        self.version, self.cfg, self.seed = version, cfg, seed
        self.resume, self.run_id = resume, run_id
        self.resumed_from: str | None = None
        self.loop: TrainLoop | None = None
        self.summary: dict[str, Any] = {}
        self.evaluation: dict[str, Any] = {}

    @property
    def label(self) -> str:
        return f"{self.store.name}@v{self.version}"

    @property
    def dataset(self) -> dict[str, Any]:
        return {
            "name": self.store.name,
            "version": self.version,
            "content_id": self.manifest.content_id,
        }

    def setup(self) -> None:
        """Resolve version, config, seed and base model; check them; create the run folder."""
        self.manifest = self.store.checked_manifest(self.version)
        self.version = self.manifest.number
        if self.resume:
            self._continue_run()
        else:
            self._new_run()
        cfg = self.cfg
        self.shards = {
            s: self.store.shard_paths(self.manifest, s) for s in ("train", "validation", "test")
        }
        self.preset = built_model(cfg.model)
        self.tiny = self.preset is not None  # built here: saved in the run's base_model/
        self.base_model = os.path.join(self.run_dir, BASE_DIR) if self.tiny else cfg.model
        # train.init: promoted continues from the promoted model's weights (and its base).
        self.init = _initial_weights(self.store, cfg, self.info if self.resume else None)
        if self.init is not None:  # store paths: downloaded here when on an object store
            self.base_model = self.mirror.local(self.init.base_model)
        self.keep = _check_model_takes_data(
            cfg, self.base_model, self.shards, self.label, self.store.fs
        )
        if cfg.mixture:
            from trainers.data import SplitReader

            sources = (
                SplitReader(self.shards["train"], self.store.fs).table.column("source").to_pylist()
            )
            check_mixture(cfg.mixture, sources, self.label)
        quantization_config(cfg.quantization_bit)  # no CUDA / bitsandbytes: fail here
        check_trainer_arguments(cfg)
        if not self.resume:
            if self.mirror.remote and self.store.fs.exists(self.mirror.store_dir(self.run_id)):
                raise FileExistsError(self.mirror.location(self.mirror.store_dir(self.run_id)))
            os.makedirs(os.path.dirname(self.run_dir), exist_ok=True)
            os.mkdir(self.run_dir)  # exclusive: two runs never share a folder
        if self.preset is not None and not os.path.isdir(self.base_model):
            from trainers.tiny import build_tiny_omni

            texts = _corpus_texts(self.shards["train"], cfg.system_template, self.store.fs)
            build_tiny_omni(
                texts,
                self.base_model,
                self.seed,
                vocab_size=self.preset.vocab_size,
                size=self.preset.size,
                multimodal=bool(self.keep),
            )
        self._update_info(
            init=self.init.to_dict() if self.init else None,
            keep_media=sorted(self.keep),
            status="training",
        )

    def _continue_run(self) -> None:
        self.run_dir = find_resumable_run(self.store, self.version, self.run_id)
        with open(os.path.join(self.run_dir, RUN_FILE), encoding="utf-8") as f:
            self.info = json.load(f)
        saved = TrainConfig.model_validate(self.info["config"])
        if self.cfg is not None and self.cfg != saved:
            logger.warning("resuming with a config that differs from the run's own")
        self.cfg = self.cfg or saved
        self.seed = self.info["seed"]
        self.resumed_from = last_checkpoint(self.run_dir)
        self.run_id = os.path.basename(self.run_dir)
        logger.info("resuming %s from %s", self.run_id, self.resumed_from)

    def _new_run(self) -> None:
        self.cfg = self.cfg or train_config_of(self.manifest.recipe)
        if self.cfg.seed is not None:
            self.seed = self.cfg.seed
        elif self.seed is None:
            self.seed = int(self.manifest.recipe.get("seed") or 0)
        self.run_id = self.run_id or new_run_id()
        self.run_dir = self.mirror.run_dir(self.run_id)
        self.info = {
            "run_id": self.run_id,
            "created": time.time(),
            "dataset": self.dataset,
            "recipe_hash": self.manifest.recipe_hash,
            "config": self.cfg.model_dump(mode="json"),
            "seed": self.seed,
        }

    def _update_info(self, **changes: Any) -> None:
        """Write run.json (the base model as a store path) here and on the store."""
        base_model = self.mirror.stored(self.base_model)
        self.info.update(base_model=base_model, updated=time.time(), **changes)
        write_json(os.path.join(self.run_dir, RUN_FILE), self.info)
        if self.info.get("status") == "done":
            self.mirror.publish(self.run_id, last=RUN_FILE)
        else:
            self.mirror.push(self.run_id, RUN_FILE)

    def job(self) -> TrainJob:
        return TrainJob(
            run_dir=self.run_dir,
            base_model=self.base_model,
            shards=self.shards,
            config=self.cfg.model_dump(mode="json"),
            seed=self.seed,
            keep_media=sorted(self.keep),
            resume_from=self.resumed_from,
            init_adapter=self.mirror.local(self.init.path)
            if self.init is not None and self.init.adapter
            else None,
            store_fs=self.store.fs,
        )

    def train(self) -> dict[str, Any]:
        """Train (here, or on Ray Train workers when cfg.workers > 1); return the summary."""
        if self.cfg.workers > 1:
            from trainers.distributed import run_on_ray

            self.summary = run_on_ray(self.job(), self.cfg.workers)
        else:
            self.loop = TrainLoop(self.job())
            self.summary = self.loop.run()
        portable_adapter_config(self.run_dir, self.base_reference())
        return self.summary

    def base_reference(self) -> str:
        """Return how saved files name the base: its hub id, or its path relative to the store."""
        if self.tiny:
            return os.path.relpath(self.mirror.stored(self.base_model), self.store.path)
        return self.cfg.model

    def evaluate(self) -> dict[str, Any]:
        """Score the test split with the trained model (loaded back after a Ray run)."""
        if self.loop is not None:
            self.evaluation = _evaluate(self.loop, self.loop.trained, self.cfg)
        else:
            self.evaluation = _evaluate_saved(self.job())
        return self.evaluation

    def write_outputs(self) -> TrainResult:
        """Write eval.json, eval.md and the model card; mark the run done; return the result."""
        write_json(os.path.join(self.run_dir, "eval.json"), self.evaluation)
        with open(os.path.join(self.run_dir, "eval.md"), "w", encoding="utf-8") as f:
            f.write(eval_markdown(self.evaluation, f"{self.label}, run {self.run_id}"))
        card = model_card(
            run_id=self.run_id,
            manifest=self.manifest,
            base_model=self.cfg.model,
            tiny_random=self.tiny,
            config=self.cfg.model_dump(mode="json"),
            seed=self.seed,
            summary=self.summary,
            evaluation=self.evaluation,
        )
        with open(os.path.join(self.run_dir, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)
        self._update_info(status="done")
        losses = self.summary.get("losses") or []
        return TrainResult(
            model_path=self.mirror.location(self.mirror.store_dir(self.run_id)),
            work_dir=self.run_dir,
            run_id=self.run_id,
            dataset=self.dataset,
            train_loss_first=losses[0]["loss"] if losses else None,
            train_loss_last=losses[-1]["loss"] if losses else None,
            eval={k: v for k, v in self.evaluation.items() if k != "replies"},
            global_step=self.summary.get("global_step", 0),
            resumed_from=self.resumed_from,
            data=self.summary.get("data", {}),
        )


def train_version(
    store_uri: str | Store,
    name: str,
    version: int | None,
    cfg: TrainConfig | None = None,
    seed: int | None = None,
    resume: bool = False,
    run_id: str | None = None,
) -> TrainResult:
    """Fine-tune on a committed version (the latest when `version` is None); return the result.

    `store_uri` is a store URI (a local path, file://, s3://) or a Store already made.

    `cfg` None means the manifest recipe's `train:` section (defaults without one) and, on
    resume, the resumed run's own config. The seed is cfg.seed, else `seed`, else the
    manifest recipe's seed. Fails before loading weights when the data has media the model
    cannot take (unless drop_media) or the config cannot run here.
    """
    run = TrainRun(store_uri, name, version, cfg, seed, resume, run_id)
    run.setup()
    run.train()
    run.evaluate()
    return run.write_outputs()


def portable_adapter_config(folder: str, base_reference: str) -> None:
    """Point a saved adapter at `base_reference` instead of this machine's absolute path."""
    path = os.path.join(folder, "adapter_config.json")
    if not os.path.exists(path):
        return  # full fine-tuning: no adapter
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config["base_model_name_or_path"] = base_reference
    write_json(path, config)


def _initial_weights(store: Store, cfg: TrainConfig, resumed: dict[str, Any] | None):
    """Return the InitWeights a run starts from (None: the base); a resumed run keeps its own."""
    from trainers.registry import InitWeights, ModelRegistry

    if resumed is not None:
        return InitWeights(**resumed["init"]) if resumed.get("init") else None
    return ModelRegistry(store).initial_weights(cfg)


def _evaluate(loop: TrainLoop, model: Any, cfg: TrainConfig) -> dict[str, Any]:
    from trainers.evaluate import TestEvaluator

    test = loop.dataset("test")
    evaluator = TestEvaluator(
        model, test, loop.collator, cfg.batch_size, cfg.eval_prompts, cfg.max_new_tokens
    )
    return evaluator.run()


def _evaluate_saved(job: TrainJob) -> dict[str, Any]:
    """Evaluate the model a distributed run saved, loaded back from the run folder."""
    from trainers.heldout import evaluate_loaded

    model, processor, spec = load_trained(job.run_dir, job.base_model, job.cfg)
    return evaluate_loaded(
        model,
        processor,
        spec,
        job.shards.get("test", []),
        job.cfg,
        job.keep_media,
        fs=job.store_fs,
    )


def load_trained(run_dir: str, base_model: str, cfg: TrainConfig):
    """Return (model, processor, spec) of a finished run: base + adapter, or full weights."""
    from trainers.models import load_model, load_processor

    if cfg.lora is not None:
        from peft import PeftModel

        from trainers.models import quiet_peft_wrapping

        spec = resolve_model(base_model, cfg.trust_remote_code)
        with quiet_peft_wrapping():
            model = PeftModel.from_pretrained(load_model(spec, cfg.trust_remote_code), run_dir)
    else:
        spec = resolve_model(run_dir, cfg.trust_remote_code)
        model = load_model(spec, cfg.trust_remote_code)
    # The run folder holds the processor as trained (for tiny-random, its own tokenizer).
    processor = load_processor(replace(spec, name=run_dir), cfg.trust_remote_code)
    return model, processor, spec
