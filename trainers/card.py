"""The readable outputs of a run: eval.md and the model card (README.md with HF YAML)."""

from __future__ import annotations

import os
import re
from typing import Any

import yaml


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def eval_markdown(evaluation: dict[str, Any], title: str) -> str:
    """Return eval.md: losses overall and per character, reply metrics, sample replies."""
    lines = [f"# Evaluation: {title}", ""]
    lines += [
        f"Split `{evaluation['split']}`: {evaluation['samples']} conversations, "
        f"{evaluation['tokens']} character tokens scored.",
        "",
        "| character | conversations | tokens | loss | perplexity |",
        "|---|---:|---:|---:|---:|",
        f"| **all** | {evaluation['samples']} | {evaluation['tokens']} | "
        f"{_num(evaluation['loss'])} | {_num(evaluation['perplexity'], 2)} |",
    ]
    for who, row in evaluation.get("per_character", {}).items():
        lines.append(
            f"| {_cell(who)} | {row['samples']} | {row['tokens']} | {_num(row['loss'])} | "
            f"{_num(row['perplexity'], 2)} |"
        )
    gen = evaluation.get("generation", {})
    lines += [
        "",
        f"## Generated replies (greedy, up to {gen.get('max_new_tokens')} new tokens)",
        "",
    ]
    labels = [
        ("replies", "replies"),
        ("ai_exposure_rate", "AI-exposure rate"),
        ("speaker_leakage_rate", "speaker leakage rate"),
        ("catchphrase_hit_rate", "catchphrase hit rate"),
        ("distinct_1", "distinct-1"),
        ("distinct_2", "distinct-2"),
        ("mean_reply_words", "mean reply length (words)"),
    ]
    lines += ["| metric | value |", "|---|---:|"]
    lines += [f"| {label} | {_num(gen.get(key), 3)} |" for key, label in labels if key in gen]
    replies = evaluation.get("replies") or []
    if replies:
        lines += ["", "| character | last user turn | reference | reply |", "|---|---|---|---|"]
        for r in replies:
            lines.append(
                f"| {_cell(r['character'], 40)} | {_cell(r['prompt'])} | {_cell(r['reference'])} | "
                f"{_cell(r['reply']) or '*(empty)*'} |"
            )
    return "\n".join(lines) + "\n"


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_card(
    *,
    run_id: str,
    manifest: dict[str, Any],
    base_model: str,
    tiny_random: bool,
    config: dict[str, Any],
    seed: int,
    summary: dict[str, Any],
    evaluation: dict[str, Any],
) -> str:
    """Return README.md: HF model-card YAML and a body naming data, base model, settings, metrics."""
    adapter = config.get("lora") is not None
    text_only = summary.get("family") == "causal-lm"
    auto = "AutoModelForCausalLM" if text_only else "AutoModelForImageTextToText"
    proc = "AutoTokenizer" if text_only else "AutoProcessor"
    name, version = manifest["name"], manifest["version"]
    meta: dict[str, Any] = {}
    if not tiny_random and _HUB_ID.match(base_model) and not os.path.exists(base_model):
        meta["base_model"] = base_model
    meta["library_name"] = "peft" if adapter else "transformers"
    meta["datasets"] = [name]
    meta["tags"] = ["roleforge", "role-play", "lora" if adapter else "full-fine-tune"]
    metrics = [
        {"type": "loss", "name": "test loss (character tokens)", "value": evaluation.get("loss")},
        {"type": "perplexity", "name": "test perplexity", "value": evaluation.get("perplexity")},
    ]
    meta["model-index"] = [
        {
            "name": f"{name}-{run_id}",
            "results": [
                {
                    "task": {"type": "text-generation", "name": "role-play"},
                    "dataset": {"type": name, "name": f"{name}@v{version}", "split": "test"},
                    "metrics": [m for m in metrics if m["value"] is not None],
                }
            ],
        }
    ]
    base_line = (
        "`tiny-random`: a tiny randomly initialised Qwen2.5-Omni thinker built offline, with a "
        "tokenizer trained on this dataset; it has no hub id, so it is saved in `base_model/` "
        "next to this card"
        if tiny_random
        else f"`{base_model}`"
    )
    gen = evaluation.get("generation", {})
    timing = summary.get("timing", {})
    data = summary.get("data", {}).get("train", {})
    hp = {k: v for k, v in config.items() if k not in ("eval_prompts", "system_template")}
    load = (
        "from peft import PeftModel\n"
        f"base = {auto}.from_pretrained({_base_ref(base_model, tiny_random)!r})\n"
        "model = PeftModel.from_pretrained(base, '<this folder>')"
        if adapter
        else f"model = {auto}.from_pretrained('<this folder>')"
    )
    body = [
        f"# {name}@v{version} role-play model ({run_id})",
        "",
        f"Fine-tuned by roleforge with {'LoRA (adapter only)' if adapter else 'full fine-tuning'}.",
        "",
        "## Data",
        "",
        f"- dataset: `{name}`, version `v{version}`",
        f"- content_id: `{manifest['content_id']}`",
        f"- recipe hash: `{manifest.get('recipe_hash', 'unknown')}`",
        f"- training samples: {data.get('used')} of {data.get('rows')} "
        f"({data.get('truncated')} truncated from the left at turn boundaries, {data.get('skipped')} skipped)",
        "",
        "## Base model",
        "",
        base_line + ".",
        "",
        "## Hyperparameters",
        "",
        f"- seed: {seed}",
        f"- system prompt template: `{config.get('system_template')}`",
        *[f"- {k}: `{v}`" for k, v in hp.items()],
        f"- optimizer steps: {summary.get('global_step')}, world size {summary.get('world_size')}, "
        f"device {summary.get('device')}, bf16 {summary.get('bf16')}",
        "",
        "## Metrics (test split, character turns only)",
        "",
        f"- loss: {_num(evaluation.get('loss'))}, perplexity: {_num(evaluation.get('perplexity'), 2)}",
        f"- first / last training loss: {_num(_first_last(summary)[0])} / {_num(_first_last(summary)[1])}",
        f"- AI-exposure rate: {_num(gen.get('ai_exposure_rate'), 3)}, speaker leakage: "
        f"{_num(gen.get('speaker_leakage_rate'), 3)}, catchphrase hits: {_num(gen.get('catchphrase_hit_rate'), 3)}",
        f"- distinct-1 / distinct-2: {_num(gen.get('distinct_1'), 3)} / {_num(gen.get('distinct_2'), 3)}, "
        f"mean reply words: {_num(gen.get('mean_reply_words'), 1)}",
        f"- training throughput: {timing.get('tokens_per_second')} tokens/s, "
        f"data-wait share {timing.get('data_wait_share')}",
        "",
        "Per-character results and sample replies: `eval.md` / `eval.json`.",
        "",
        "## Loading",
        "",
        "```python",
        f"from transformers import {auto}, {proc}",
        f"processor = {proc}.from_pretrained('<this folder>')",
        load,
        "```",
        "",
        "Weights are safetensors only; `trust_remote_code` was "
        f"{'on' if config.get('trust_remote_code') else 'off'} for training.",
    ]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n".join(body) + "\n"


def _base_ref(base_model: str, tiny_random: bool) -> str:
    return "<this folder>/base_model" if tiny_random else base_model


def _first_last(summary: dict[str, Any]) -> tuple[float | None, float | None]:
    losses = summary.get("losses") or []
    if not losses:
        return None, None
    return losses[0]["loss"], losses[-1]["loss"]
