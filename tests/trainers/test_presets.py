"""Built models: `scratch-small` trains fully from scratch, the family fits the data."""

from __future__ import annotations

import json
from pathlib import Path

from trainers import train_version
from trainers.config import LoraConfig, TrainConfig
from trainers.presets import SCRATCH_SMALL, built_model


def test_a_from_scratch_preset_defaults_to_full_fine_tuning_with_its_own_learning_rate():
    cfg = TrainConfig(model=SCRATCH_SMALL)
    assert cfg.lora is None and cfg.learning_rate == 3e-3 and cfg.warmup_ratio == 0.1
    # What the recipe says wins over the preset's defaults.
    mine = TrainConfig(model=SCRATCH_SMALL, lora={"r": 4}, learning_rate=1e-3)
    assert mine.lora == LoraConfig(r=4) and mine.learning_rate == 1e-3
    # tiny-random stays the unit tests' LoRA model; hub ids are not presets.
    assert TrainConfig(model="tiny-random").lora == LoraConfig()
    assert built_model("Qwen/Qwen2.5-Omni-3B") is None


def _run(store: Path, name: str, **overrides) -> tuple[dict, Path]:
    cfg = TrainConfig(
        model=SCRATCH_SMALL,
        max_steps=3,
        batch_size=4,
        max_length=512,
        eval_prompts=1,
        max_new_tokens=4,
        report_to=[],
        **overrides,
    )
    result = train_version(str(store), name, 1, cfg, seed=0)
    return result.to_dict(), Path(result.model_path)


def test_scratch_small_is_a_causal_lm_with_full_weights_for_text_only_data(text_store):
    out, folder = _run(text_store, "txt")
    base = json.loads((folder / "base_model" / "config.json").read_text())
    assert base["model_type"] == "qwen3" and base["hidden_size"] == 96
    assert (folder / "model.safetensors").exists() and not (folder / "adapter_config.json").exists()
    assert out["train_loss_last"] < out["train_loss_first"]
    # Each test conversation's own loss is kept, for the paired comparison.
    per_sample = json.loads((folder / "eval.json").read_text())["per_sample"]
    assert len(per_sample) == 3 and all(row["tokens"] > 0 for row in per_sample.values())


def test_scratch_small_is_an_omni_thinker_for_image_and_audio_data(mm_store):
    _, folder = _run(mm_store, "mm")
    base = json.loads((folder / "base_model" / "config.json").read_text())
    assert base["model_type"] == "qwen2_5_omni_thinker"
    assert base["text_config"]["hidden_size"] == 96
    card = (folder / "README.md").read_text()
    assert "a from-scratch toy that proves the loop" in card
