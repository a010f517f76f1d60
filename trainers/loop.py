"""One training process: data, model, the transformers Trainer with our collator.

The same `TrainLoop` runs alone or in each Ray Train worker (where torch.distributed
is already set up and the Trainer shards batches by rank). Only rank 0 writes outputs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from trainers.chat import ChatFormatter
from trainers.collator import RolePlayCollator
from trainers.config import TrainConfig
from trainers.curve import write_training_curve
from trainers.data import RolePlayDataset, SplitReader
from trainers.encoding import ConversationEncoder
from trainers.mixture import MixtureReport, draw_mixture
from trainers.models import (
    ModelSpec,
    apply_lora,
    freeze_encoders,
    load_model,
    load_processor,
    quantization_config,
    resolve_model,
)
from trainers.progress import progress_callback

logger = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"  # event files, inside the model folder


@dataclass
class TrainJob:
    """Everything a training process needs; plain data, so Ray can ship it to workers."""

    run_dir: str
    base_model: str  # local path or hub id
    shards: dict[str, list[str]]  # split -> shard paths
    config: dict[str, Any]  # TrainConfig as JSON
    seed: int
    keep_media: list[str]
    resume_from: str | None = None
    init_adapter: str | None = None  # train.init: promoted: continue this saved LoRA adapter
    dataloader_workers: int | None = None  # None: 0 on CPU, up to 4 per process on GPU
    store_fs: Any = None  # the filesystem the shards are on (pipeline.store.fs); None: local

    @property
    def cfg(self) -> TrainConfig:
        return TrainConfig.model_validate(self.config)


@dataclass
class StepTimes:
    """Where optimizer-step time went: waiting for batches vs. everything else."""

    steps: int = 0
    step_seconds: float = 0.0
    data_wait_seconds: float = 0.0
    _fetch_start: float | None = field(default=None, repr=False)
    # Non-padding tokens fed to the model, summed where the batches are (a GPU tensor there):
    # reading a device number every step would make each step wait for the GPU.
    _tokens: Any = field(default=0, repr=False)

    def count(self, batches: list[dict[str, Any]]) -> None:
        """Add the non-padding tokens of `batches`, without reading them back from a device."""
        for b in batches:
            self._tokens = self._tokens + b["attention_mask"].sum()

    @property
    def tokens(self) -> int:
        """Return the non-padding tokens so far (waits for the device once, when read)."""
        return int(self._tokens)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "step_seconds": round(self.step_seconds, 4),
            "data_wait_seconds": round(self.data_wait_seconds, 4),
            "data_wait_share": round(self.data_wait_seconds / self.step_seconds, 4)
            if self.step_seconds
            else None,
            "tokens": self.tokens,
            "tokens_per_second": round(self.tokens / self.step_seconds, 2)
            if self.step_seconds
            else None,
        }


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "load_adapter")


def _trainer_class():
    """Return our Trainer subclass (built lazily: transformers is a heavy import)."""
    from transformers import Trainer, TrainerCallback

    class StepTimerCallback(TrainerCallback):
        def __init__(self, times: StepTimes):
            self.times = times

        def on_step_end(self, args, state, control, **kwargs):
            if self.times._fetch_start is not None:
                self.times.step_seconds += time.perf_counter() - self.times._fetch_start
                self.times.steps += 1
                self.times._fetch_start = None

    class LogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                logger.info("step %d: %s", state.global_step, logs)

    class RoleForgeTrainer(Trainer):
        """Trainer that times how long each optimizer step waits for its batches."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.step_times = StepTimes()
            self.add_callback(StepTimerCallback(self.step_times))
            self.add_callback(LogCallback())

        def _load_best_model(self) -> None:
            # The Trainer reloads a full model's best checkpoint with load_state_dict, which
            # skips the key renaming from_pretrained applies: for models whose saved names
            # differ from their module names (the Qwen2.5-Omni thinker saves `audio_tower.*`
            # for `model.audio_tower.*`) nothing loaded, a missing-keys warning was printed
            # and the last step's weights stayed. from_pretrained reads it as saved.
            if _is_peft(self.model) or self.is_deepspeed_enabled or self.is_fsdp_enabled:
                return super()._load_best_model()
            best = type(self.model).from_pretrained(
                self.state.best_model_checkpoint, dtype=self.model.dtype
            )
            self.model.load_state_dict(best.state_dict())

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            start = time.perf_counter()
            batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
            self.step_times.data_wait_seconds += time.perf_counter() - start
            self.step_times._fetch_start = start
            self.step_times.count(batches)
            return batches, num_items

    return RoleForgeTrainer


def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


class TrainLoop:
    """Builds data, model and Trainer for a TrainJob; `run()` trains and saves on rank 0."""

    def __init__(self, job: TrainJob):
        import torch

        self.job = job
        cfg = self.cfg = job.cfg
        self.use_gpu = gpu_available() if cfg.use_gpu is None else cfg.use_gpu
        self.bf16 = (
            cfg.bf16
            if cfg.bf16 is not None
            else bool(self.use_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        )
        self.spec: ModelSpec = resolve_model(job.base_model, cfg.trust_remote_code)
        self.processor = load_processor(self.spec, cfg.trust_remote_code)
        self.formatter = ChatFormatter(cfg.system_template, keep=frozenset(job.keep_media))
        self.encoder = ConversationEncoder(
            self.processor, multimodal=self.spec.multimodal, max_length=cfg.max_length
        )
        self.train_data = self.dataset("train")
        self.mixture: MixtureReport | None = None
        if cfg.mixture:
            indices, self.mixture = draw_mixture(self.train_data.sources(), cfg.mixture, job.seed)
            self.train_data.select(indices)
        self.val_data = self.dataset("validation") if job.shards.get("validation") else None
        if self.val_data is not None and len(self.val_data) == 0:
            self.val_data = None
        self.model = self._model()
        self.tokenizer = self.encoder.tokenizer
        self.collator = RolePlayCollator(
            pad_token_id=self.tokenizer.pad_token_id,
            accepted=_forward_inputs(self.model),
            encoder=self.encoder,
        )

    def dataset(self, split: str) -> RolePlayDataset:
        """Return the planned dataset of `split` (empty when the version has none)."""
        reader = SplitReader(self.job.shards.get(split, []), self.job.store_fs)
        return RolePlayDataset(split, reader, self.formatter, self.encoder)

    def _model(self):
        import torch

        # bf16 weights for LoRA too: peft keeps the adapter itself in float32.
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        quantization = quantization_config(self.cfg.quantization_bit)
        model = load_model(self.spec, self.cfg.trust_remote_code, dtype, quantization)
        if quantization is not None:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=self.cfg.gradient_checkpointing
            )
        if self.job.init_adapter is not None:
            from trainers.registry import continue_adapter

            model = continue_adapter(model, self.job.init_adapter)
        elif self.cfg.lora is not None:
            # Same seed, same adapter initialisation, without touching the global generator.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.job.seed)
                model = apply_lora(model, self.cfg.lora, self.spec.family)
        else:
            frozen = freeze_encoders(model)
            logger.info("full fine-tuning; %d encoder parameters frozen", frozen)
        if self.cfg.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()  # LoRA: checkpointed blocks need grad inputs
        return model

    def training_args(self):
        """Return the TrainingArguments of this job."""
        cfg = self.cfg
        evaluate = self.val_data is not None and cfg.eval_steps is not None
        # Held-out discipline: the validation split alone picks the checkpoint kept (and
        # stops early with a patience); the test split is read only after training.
        if cfg.early_stopping_patience is not None and not evaluate:
            logger.warning("early stopping needs eval_steps and a validation split; it is off")
        workers = self.job.dataloader_workers
        if workers is None:
            # On CPU the training step already uses every core; on GPU, worker processes
            # prepare media while the GPU computes.
            workers = min(4, (os.cpu_count() or 2) // 2) if self.use_gpu else 0
        return trainer_arguments(
            cfg,
            os.path.join(self.job.run_dir, CHECKPOINTS),
            seed=self.job.seed,
            use_gpu=self.use_gpu,
            bf16=self.bf16,
            evaluate=evaluate,
            dataloader_workers=workers,
        )

    def trainer(self):
        """Return the Trainer for this job (our subclass, which times data waits)."""
        from transformers import EarlyStoppingCallback
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        args = self.training_args()
        callbacks = []
        if args.load_best_model_at_end and self.cfg.early_stopping_patience is not None:
            callbacks.append(EarlyStoppingCallback(self.cfg.early_stopping_patience))
        if "tensorboard" in self.cfg.report_to:
            callbacks.append(_tensorboard_callback(os.path.join(self.job.run_dir, TENSORBOARD)))
        trainer = _trainer_class()(
            model=self.model,
            args=args,
            train_dataset=self.train_data,
            eval_dataset=self.val_data,
            data_collator=self.collator,
            callbacks=callbacks,
        )
        # Our own progress replaces the Trainer's: stdout belongs to `roleforge train --json`,
        # and the bar / lines show tokens/s too.
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        progress = progress_callback(self.cfg.progress, trainer.step_times)
        if progress is not None:
            trainer.add_callback(progress)
        return trainer

    def run(self) -> dict[str, Any]:
        """Train (resuming when asked), save the model on rank 0; return the training summary."""
        if len(self.train_data) == 0:
            raise ValueError("the train split has no usable samples")
        trainer = self.trainer()
        started = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=self.job.resume_from)
        elapsed = time.perf_counter() - started
        summary = {
            "global_step": trainer.state.global_step,
            "train_runtime": round(elapsed, 3),
            "train_loss": output.training_loss,
            "losses": [
                {"step": e["step"], "loss": e["loss"]}
                for e in trainer.state.log_history
                if "loss" in e
            ],
            "eval_losses": [
                {"step": e["step"], "eval_loss": e["eval_loss"]}
                for e in trainer.state.log_history
                if "eval_loss" in e
            ],
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "resumed_from": self.job.resume_from,
            "timing": trainer.step_times.to_dict(),
            "world_size": trainer.args.world_size,
            "data": {
                "train": self.train_data.stats.to_dict(),
                "validation": self.val_data.stats.to_dict() if self.val_data else None,
            },
            "bf16": self.bf16,
            "device": "cuda" if self.use_gpu else "cpu",
            "family": self.spec.family,
            "mixture": self.mixture.to_dict() if self.mixture else None,
        }
        if trainer.is_world_process_zero():
            trainer.save_model(self.job.run_dir)
            self.processor.save_pretrained(self.job.run_dir)
            stray = os.path.join(self.job.run_dir, "training_args.bin")
            if os.path.exists(stray):
                os.remove(stray)  # a pickle; the card and run.json hold the arguments
            write_training_curve(trainer.state.log_history, self.job.run_dir)
            write_json(os.path.join(self.job.run_dir, SUMMARY_FILE), summary)
        self.trained = trainer.model
        return summary


def _forward_inputs(model: Any) -> set[str] | None:
    """Return the argument names of the underlying model's forward (None: take everything)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    names = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names or None


def train_in_worker(job_dict: dict[str, Any]) -> None:
    """Ray Train worker entry: run the same TrainLoop on this worker's rank."""
    TrainLoop(TrainJob(**job_dict)).run()


def json_text(data: Any) -> str:
    """Return `data` as the indented JSON text the run's files hold."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def write_json(path: str, data: Any) -> None:
    """Write `data` as indented JSON at `path` atomically."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json_text(data))
    os.replace(tmp, path)


class TrainerArgumentsError(ValueError):
    """The train config makes TrainingArguments fail (FSDP / DeepSpeed / trainer_args)."""


def trainer_arguments(
    cfg: TrainConfig,
    output_dir: str,
    *,
    seed: int,
    use_gpu: bool,
    bf16: bool,
    evaluate: bool,
    dataloader_workers: int = 0,
):
    """Return the TrainingArguments of `cfg`: our keys, FSDP/DeepSpeed, then `trainer_args`."""
    from transformers import TrainingArguments

    # With a validation split, its loss picks the checkpoint kept (early stopping or not).
    save_steps = cfg.save_steps or (cfg.eval_steps if evaluate else 500)
    if evaluate and save_steps % cfg.eval_steps:
        save_steps = cfg.eval_steps  # the best checkpoint must exist at every evaluation
    sharding: dict[str, Any] = {}
    if cfg.fsdp:
        sharding = {"fsdp": cfg.fsdp, "fsdp_config": cfg.fsdp_config}
    elif cfg.deepspeed is not None:
        sharding = {"deepspeed": cfg.deepspeed}
    # TensorBoard is our own callback (its events belong in the run folder, not in
    # checkpoints/runs/); every other integration is the Trainer's.
    report_to = [r for r in cfg.report_to if r != "tensorboard"] or "none"
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        optim=cfg.optim,
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=cfg.eval_steps if evaluate else None,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        load_best_model_at_end=evaluate,
        metric_for_best_model="eval_loss" if evaluate else None,
        greater_is_better=False if evaluate else None,
        bf16=bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        use_cpu=not use_gpu,
        seed=seed,
        data_seed=seed,
        report_to=report_to,
        disable_tqdm=True,
        remove_unused_columns=False,
        # A multimodal PeftModel has no task type, so the Trainer cannot find `labels`
        # in its forward signature; without this, evaluation computes no loss.
        label_names=["labels"],
        dataloader_num_workers=dataloader_workers,
        dataloader_persistent_workers=dataloader_workers > 0,
        ddp_find_unused_parameters=False,
        **sharding,
    )
    kwargs.update(cfg.trainer_args)  # checked by TrainConfig: never one of the fields above it owns
    return TrainingArguments(**kwargs)


def check_trainer_arguments(cfg: TrainConfig) -> None:
    """Raise TrainerArgumentsError if `cfg` cannot become TrainingArguments (no weights needed)."""
    import importlib.util
    import tempfile

    if "tensorboard" in cfg.report_to and importlib.util.find_spec("tensorboard") is None:
        raise TrainerArgumentsError(
            "train.report_to: tensorboard needs the tensorboard package (pip install "
            "tensorboard), or set report_to: none"
        )
    if cfg.deepspeed is not None and importlib.util.find_spec("deepspeed") is None:
        raise TrainerArgumentsError(
            "train.deepspeed needs the deepspeed package: pip install deepspeed"
        )
    with tempfile.TemporaryDirectory(prefix="roleforge-args-") as tmp:
        try:
            trainer_arguments(
                cfg, tmp, seed=0, use_gpu=bool(cfg.use_gpu), bf16=False, evaluate=False
            )
        except (ValueError, ImportError, TypeError, RuntimeError) as exc:
            raise TrainerArgumentsError(f"train config: {exc}") from None


def _tensorboard_callback(log_dir: str):
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(SummaryWriter(log_dir=log_dir))
