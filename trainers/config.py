"""The `train:` section of a recipe: model, LoRA, schedule, evaluation and devices."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pipeline.record.config import StrictModel

# Metrics a recipe may gate promotion on (`promote_if`), by which way is better. They are
# the names of eval.json: loss/perplexity on character tokens, rates over greedy replies.
LOWER_IS_BETTER = ("eval_loss", "perplexity", "ai_exposure_rate", "speaker_leakage_rate")
HIGHER_IS_BETTER = ("catchphrase_hit_rate", "distinct_1", "distinct_2")


class LoraConfig(StrictModel):
    r: int = Field(default=16, ge=1)
    alpha: int | None = None
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | str | None = None


class TrainConfig(StrictModel):
    model: str = "tiny-random"
    lora: LoraConfig | None = Field(default_factory=LoraConfig)  # null = full fine-tuning
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=16)
    eval_steps: int | None = Field(default=None, ge=1)
    save_steps: int | None = Field(default=None, ge=1)
    early_stopping_patience: int | None = Field(default=None, ge=1)
    system_template: str = "You are {name}. {profile}"
    drop_media: bool = False
    bf16: bool | None = None  # None = on when a GPU supports it
    gradient_checkpointing: bool = False
    workers: int = Field(default=1, ge=1)  # >1 runs under Ray Train
    use_gpu: bool | None = None  # None = when one is present
    trust_remote_code: bool = False
    seed: int | None = None  # None = the recipe seed
    eval_prompts: int = Field(default=8, ge=0)
    max_new_tokens: int = Field(default=32, ge=1)
    # base: start from `model`; promoted: continue from the promoted model's weights (from
    # `model` while none is promoted yet).
    init: Literal["base", "promoted"] = "base"
    # Promote a new model unless it is worse than the promoted one by more than these
    # tolerances (absolute, in the metric's own unit) on the same test split.
    promote_if: dict[str, float] = Field(default_factory=lambda: {"eval_loss": 0.0})

    @field_validator("promote_if")
    @classmethod
    def _known_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        known = LOWER_IS_BETTER + HIGHER_IS_BETTER
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"unknown metric {', '.join(unknown)}; use {', '.join(known)}")
        negative = sorted(k for k, tol in v.items() if tol < 0)
        if negative:
            raise ValueError(f"tolerances must be >= 0: {', '.join(negative)}")
        if not v:
            raise ValueError("name at least one metric, e.g. {eval_loss: 0.0}")
        return v
