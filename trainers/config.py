"""The `train:` section of a recipe: model, LoRA, schedule, evaluation, devices and mixtures.

Keys use our short names; the Hugging Face `TrainingArguments` / TRL / LLaMA-Factory
spellings of the same settings (`num_train_epochs`, `per_device_train_batch_size`,
`lora_rank`, `cutoff_len`, ...) are accepted as aliases, so a config written for those
tools reads here unchanged. Any other `TrainingArguments` field goes in `trainer_args:`,
checked against the installed transformers' fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.record.config import StrictModel

# Their name -> ours. Flat LLaMA-Factory LoRA keys map into the `lora:` section.
ALIASES: dict[str, str] = {
    "model_name_or_path": "model",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "lr_scheduler_type": "lr_scheduler",
    "cutoff_len": "max_length",
    "max_seq_length": "max_length",  # TRL < 0.20
}
LORA_ALIASES: dict[str, str] = {
    "lora_rank": "r",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "lora_target": "target_modules",
}
# TrainingArguments fields that our own keys decide; trainer_args may not set them. Any
# other field we fill (save_total_limit, dataloader workers, ...) trainer_args overrides.
OWN_TRAINER_FIELDS: dict[str, str] = {
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "num_train_epochs": "epochs",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "lr_scheduler_type": "lr_scheduler",
    "warmup_steps": "warmup_ratio",
    "weight_decay": "weight_decay",
    "optim": "optim",
    "logging_steps": "logging_steps",
    "eval_steps": "eval_steps",
    "save_steps": "save_steps",
    "bf16": "bf16",
    "activation_checkpointing": "gradient_checkpointing",
    "gradient_checkpointing": "gradient_checkpointing",
    "seed": "seed",
    "data_seed": "seed",
    "report_to": "report_to",
    "fsdp": "fsdp",
    "fsdp_config": "fsdp_config",
    "deepspeed": "deepspeed",
    "output_dir": "(the run folder)",
    "use_cpu": "use_gpu",
    "eval_strategy": "eval_steps",
    "save_strategy": "save_steps",
    "load_best_model_at_end": "early_stopping_patience",
    "metric_for_best_model": "early_stopping_patience",
    "greater_is_better": "early_stopping_patience",
    "disable_tqdm": "progress",
    "remove_unused_columns": "(off: the collator needs every column)",
    "label_names": "(labels: the character-turn mask)",
}

# Metrics a recipe may gate promotion on (`promote_if`), by which way is better. They are
# the names of eval.json: loss/perplexity on character tokens, rates and scores over greedy
# replies. Each also has a value per test conversation (trainers.comparison), so a
# significance rule pairs any of them.
LOWER_IS_BETTER = ("eval_loss", "perplexity", "ai_exposure_rate", "speaker_leakage_rate")
HIGHER_IS_BETTER = (
    "catchphrase_hit_rate",
    "distinct_1",
    "distinct_2",
    "rouge_l",
    "chrf",
    "judge_score",
)
# Fewer paired test conversations than this never count as evidence either way (trainers.paired).
MIN_PAIRS = 3
# Metrics of the generated replies: measured on `eval_prompts` test conversations only.
REPLY_METRICS = tuple(
    m for m in LOWER_IS_BETTER + HIGHER_IS_BETTER if m not in ("eval_loss", "perplexity")
)


class SignificanceRule(StrictModel):
    """A promote_if rule decided by the paired bootstrap interval (trainers.paired).

    better: true promotes only a significantly better model; false (the default) refuses
    only a significantly worse one. `confidence` is the interval's level.
    """

    better: bool = False
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


# The default promote_if: not significantly worse on eval_loss (paired, 95%), and not worse
# at all at breaking character on the greedy replies.
def default_promote_if() -> dict[str, float | SignificanceRule]:
    return {"eval_loss": SignificanceRule(better=False), "ai_exposure_rate": 0.0}


# Training defaults of the models roleforge builds from scratch (trainers.presets): LoRA on
# random weights learns little, so full fine-tuning, with a learning rate for small models.
FROM_SCRATCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "scratch-small": {
        "lora": None,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.1,
        "weight_decay": 0.01,
    },
}


class LoraConfig(StrictModel):
    r: int = Field(default=16, ge=1)
    alpha: int | None = None
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | str | None = None

    @field_validator("target_modules", mode="before")
    @classmethod
    def _llamafactory_targets(cls, v: Any) -> Any:
        # LLaMA-Factory writes `lora_target: all` or `q_proj,v_proj`.
        if v == "all":
            return None
        if isinstance(v, str) and "," in v and not any(c in v for c in "()[]*\\|^$"):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v


class TrainConfig(StrictModel):
    model: str = "tiny-random"
    lora: LoraConfig | None = Field(default_factory=LoraConfig)  # null = full fine-tuning
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    # any transformers OptimizerNames value; the default is the Trainer's own (torch >= 2.8)
    optim: str = "adamw_torch_fused"
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=16)
    logging_steps: int = Field(default=1, ge=1)
    eval_steps: int | None = Field(default=None, ge=1)
    save_steps: int | None = Field(default=None, ge=1)
    early_stopping_patience: int | None = Field(default=None, ge=1)
    system_template: str = "You are {name}. {profile}"
    drop_media: bool = False
    bf16: bool | None = None  # None = on when a GPU supports it
    gradient_checkpointing: bool = False
    quantization_bit: Literal[4, 8] | None = None  # QLoRA through bitsandbytes; CUDA only
    workers: int = Field(default=1, ge=1)  # >1 runs under Ray Train
    use_gpu: bool | None = None  # None = when one is present
    fsdp: bool | str | None = None  # TrainingArguments.fsdp; true + fsdp_config is current
    fsdp_config: dict[str, Any] | None = None
    deepspeed: str | dict[str, Any] | None = None  # a DeepSpeed JSON path or the config itself
    trust_remote_code: bool = False
    seed: int | None = None  # None = the recipe seed
    # source name -> relative weight of the training mix; unnamed sources are left out.
    mixture: dict[str, float] | None = None
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])
    progress: Literal["auto", "bar", "lines", "none"] = "auto"  # auto: a bar on a TTY
    trainer_args: dict[str, Any] = Field(default_factory=dict)  # other TrainingArguments
    eval_prompts: int = Field(default=8, ge=0)
    max_new_tokens: int = Field(default=32, ge=1)
    # base: start from `model`; promoted: continue from the promoted model's weights (from
    # `model` while none is promoted yet).
    init: Literal["base", "promoted"] = "base"
    # Per metric, on the same test split: a tolerance (promote unless worse than the promoted
    # model by more than this, in the metric's own unit) or a SignificanceRule (decided by the
    # paired bootstrap interval over test conversations).
    promote_if: dict[str, float | SignificanceRule] = Field(default_factory=default_promote_if)

    @field_validator("promote_if")
    @classmethod
    def _known_metrics(
        cls, v: dict[str, float | SignificanceRule]
    ) -> dict[str, float | SignificanceRule]:
        known = LOWER_IS_BETTER + HIGHER_IS_BETTER
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"unknown metric {', '.join(unknown)}; use {', '.join(known)}")
        negative = sorted(
            k for k, tol in v.items() if not isinstance(tol, SignificanceRule) and tol < 0
        )
        if negative:
            raise ValueError(f"tolerances must be >= 0: {', '.join(negative)}")
        if not v:
            raise ValueError("name at least one metric, e.g. {eval_loss: 0.0}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _accept_their_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for theirs, ours in ALIASES.items():
            if theirs in data:
                if ours in data:
                    raise ValueError(f"{theirs} and {ours} name the same setting; keep one")
                data[ours] = data.pop(theirs)
        flat_lora = {LORA_ALIASES[k]: data.pop(k) for k in list(data) if k in LORA_ALIASES}
        finetuning = data.pop("finetuning_type", None)
        if finetuning not in (None, "lora", "full"):
            raise ValueError(f"finetuning_type {finetuning!r}: roleforge trains lora or full")
        if finetuning == "full":
            if flat_lora or data.get("lora"):
                raise ValueError("finetuning_type: full takes no LoRA settings")
            data["lora"] = None
        elif flat_lora:
            data["lora"] = {**(data.get("lora") or {}), **flat_lora}
        if isinstance(data.get("report_to"), str):
            data["report_to"] = [] if data["report_to"] == "none" else [data["report_to"]]
        defaults = FROM_SCRATCH_DEFAULTS.get(data.get("model", "tiny-random"))
        if defaults:  # a from-scratch model's defaults (full tuning, its lr); the recipe wins
            data = {**defaults, **data}
        return data

    @field_validator("mixture")
    @classmethod
    def _positive_total(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        if any(w < 0 for w in v.values()) or not sum(v.values()) > 0:
            raise ValueError("mixture weights must be >= 0 with a positive total")
        return v

    @field_validator("optim")
    @classmethod
    def _known_optimizer(cls, v: str) -> str:
        if v in ("adamw_torch_fused", "adamw_torch"):
            return v  # the common cases: skip importing transformers
        from transformers.training_args import OptimizerNames

        names = [o.value for o in OptimizerNames]
        if v not in names:
            raise ValueError(f"unknown optimizer {v!r}; transformers knows {', '.join(names)}")
        return v

    @field_validator("trainer_args")
    @classmethod
    def _real_trainer_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            return v
        import dataclasses

        from transformers import TrainingArguments

        known = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
        for key in v:
            if key in OWN_TRAINER_FIELDS:
                raise ValueError(f"trainer_args.{key}: set train.{OWN_TRAINER_FIELDS[key]} instead")
            if key not in known:
                raise ValueError(f"trainer_args.{key} is not a TrainingArguments field")
        return v

    @model_validator(mode="after")
    def _replies_to_pair(self) -> TrainConfig:
        # A reply metric is paired over the eval_prompts conversations that get replies;
        # fewer than MIN_PAIRS are never evidence, so such a rule could only refuse.
        unpaired = sorted(
            m
            for m, rule in self.promote_if.items()
            if isinstance(rule, SignificanceRule) and m in REPLY_METRICS
        )
        if unpaired and self.eval_prompts < MIN_PAIRS:
            raise ValueError(
                f"promote_if {', '.join(unpaired)}: a significance rule on a reply metric pairs "
                f"the replies to eval_prompts test conversations, and eval_prompts "
                f"{self.eval_prompts} gives fewer than the {MIN_PAIRS} it needs; raise "
                f"eval_prompts or give a tolerance"
            )
        return self

    @model_validator(mode="after")
    def _quantization_needs_lora(self) -> TrainConfig:
        if self.quantization_bit is not None and self.lora is None:
            raise ValueError("quantization_bit (QLoRA) needs lora; full fine-tuning is not 4/8-bit")
        if self.deepspeed is not None and self.fsdp:
            raise ValueError("choose one of fsdp and deepspeed")
        if self.fsdp_config and not self.fsdp:
            raise ValueError("fsdp_config needs fsdp: true")
        return self


class JudgeConfig(StrictModel):
    """`eval.judge`: which endpoint and model score replies (trainers.judge), by which
    rubric (a shipped rubric's name, or a text file's path), how sampled."""

    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    rubric: str = "character_consistency"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=64, ge=1)
    seed: int = 0
    timeout_s: float = Field(default=60.0, gt=0)


class EvalConfig(StrictModel):
    """The `eval:` section of a recipe: what retrain adds to the test evaluation."""

    judge: JudgeConfig | None = None  # an LLM judge behind an OpenAI-compatible endpoint


def train_config_of(recipe: dict[str, Any]) -> TrainConfig:
    """Return the `train:` section of a recipe as JSON (a manifest's), defaults without one."""
    section = recipe.get("train")
    return TrainConfig.model_validate(section) if section else TrainConfig()
