"""The readable outputs of a run: eval.md and the model card (README.md with HF YAML)."""

from __future__ import annotations

import os
import re
from typing import Any

from pipeline.store.manifest import Manifest


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
        ("rouge_l", "ROUGE-L F1 vs reference"),
        ("chrf", "chrF vs reference (0-1)"),
    ]
    lines += ["| metric | value |", "|---|---:|"]
    lines += [f"| {label} | {_num(gen.get(key), 3)} |" for key, label in labels if key in gen]
    per_character = evaluation.get("reference_scores_per_character") or {}
    if per_character:
        lines += ["", "| character | ROUGE-L | chrF |", "|---|---:|---:|"]
        for who, row in per_character.items():
            lines.append(
                f"| {_cell(who, 40)} | {_num(row.get('rouge_l'), 3)} | {_num(row.get('chrf'), 3)} |"
            )
    lines += replies_markdown(evaluation.get("replies") or [], None)
    return "\n".join(lines) + "\n"


def replies_markdown(
    replies: list[dict[str, Any]],
    baseline: dict[str, dict[str, Any]] | None,
    per_character: int = 3,
) -> list[str]:
    """Return up to `per_character` cases per character: the context (last user turn), the
    reference reply, the baseline's reply (when `baseline` maps record id -> its reply) and
    this model's greedy and sampled replies."""
    if not replies:
        return []
    lines = ["", "## Replies per character", ""]
    by_character: dict[str, list[dict[str, Any]]] = {}
    for r in replies:
        by_character.setdefault(r["character"], []).append(r)
    for who, rows in sorted(by_character.items()):
        lines += [f"### {_cell(who, 80)}", ""]
        for r in rows[:per_character]:
            lines += [f"- context (last user turn): {_cell(r['prompt'], 300)}"]
            lines += [f"  - reference: {_cell(r['reference'], 300)}"]
            if baseline is not None:
                other = baseline.get(r["id"])
                shown = _cell(other["reply"], 300) if other else "*(not generated)*"
                lines += [f"  - baseline: {shown or '*(empty)*'}"]
            scores = ""
            if "rouge_l" in r:
                scores = f" (ROUGE-L {r['rouge_l']:.3f}, chrF {r['chrf']:.3f})"
            lines += [
                f"  - {'new' if baseline is not None else 'reply'}: "
                f"{_cell(r['reply'], 300) or '*(empty)*'}{scores}"
            ]
            if r.get("sampled") is not None:
                lines += [f"  - sampled: {_cell(r['sampled'], 300) or '*(empty)*'}"]
        lines.append("")
    return lines


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Hub pipeline tags by model family (the Omni thinker is tagged like Qwen2.5-Omni itself).
PIPELINE_TAGS = {
    "any-to-text": "any-to-any",
    "image-text": "image-text-to-text",
    "causal-lm": "text-generation",
}


def card_data(
    *,
    run_id: str,
    manifest: Manifest,
    base_model: str,
    tiny_random: bool,
    adapter: bool,
    family: str | None,
    evaluation: dict[str, Any],
):
    """Return the card's huggingface_hub ModelCardData: base, task, licence, dataset, metrics."""
    from huggingface_hub import EvalResult, ModelCardData

    name, version = manifest.name, manifest.version
    recipe = manifest.recipe
    license_id = recipe.get("license") or "other"
    hub_base = not tiny_random and _HUB_ID.match(base_model) and not os.path.exists(base_model)
    results = [
        EvalResult(
            task_type="text-generation",
            task_name="role-play",
            dataset_type=name,
            dataset_name=f"{name}@v{version}",
            dataset_split="test",
            dataset_revision=manifest.content_id,
            metric_type=metric,
            metric_name=label,
            metric_value=evaluation[metric],
        )
        for metric, label in (
            ("loss", "test loss (character tokens)"),
            ("perplexity", "test perplexity"),
        )
        if evaluation.get(metric) is not None
    ]
    return ModelCardData(
        base_model=base_model if hub_base else None,
        pipeline_tag=PIPELINE_TAGS.get(family or "", "text-generation"),
        library_name="peft" if adapter else "transformers",
        license=license_id,
        # The Hub spec asks for a name (and a link, when the recipe gives one) with "other".
        license_name=recipe.get("license_name")
        or ("unspecified" if license_id == "other" else None),
        license_link=recipe.get("license_link"),
        datasets=[f"{name}@v{version}"],
        tags=["roleforge", "role-play", "lora" if adapter else "full-fine-tune"],
        model_name=f"{name}-{run_id}",
        eval_results=results or None,
    )


def model_card(
    *,
    run_id: str,
    manifest: Manifest,
    base_model: str,
    tiny_random: bool,
    config: dict[str, Any],
    seed: int,
    summary: dict[str, Any],
    evaluation: dict[str, Any],
) -> str:
    """Return README.md: HF model-card YAML and a body naming data, base model, settings, metrics."""
    adapter = config.get("lora") is not None
    family = summary.get("family")
    data = card_data(
        run_id=run_id,
        manifest=manifest,
        base_model=base_model,
        tiny_random=tiny_random,
        adapter=adapter,
        family=family,
        evaluation=evaluation,
    )
    name, version = manifest.name, manifest.version
    train = summary.get("data", {}).get("train", {})
    hp = {k: v for k, v in config.items() if k not in ("eval_prompts", "system_template")}
    base_line = (
        f"`{base_model}`: a randomly initialised model built offline by roleforge (a "
        "Qwen2.5-Omni thinker, or a Qwen3 causal LM for text-only data), with a tokenizer "
        "trained on this dataset; a from-scratch toy that proves the loop, not a role-play "
        "model. It has no hub id, so it is saved in `base_model/` next to this card"
        if tiny_random
        else f"`{base_model}`"
    )
    body = [
        f"# {name}@v{version} role-play model ({run_id})",
        "",
        f"Fine-tuned by roleforge with {'LoRA (adapter only)' if adapter else 'full fine-tuning'}.",
        "",
        "## Data",
        "",
        f"- dataset: `{name}`, version `v{version}`",
        f"- content_id: `{manifest.content_id}`",
        f"- recipe hash: `{manifest.recipe_hash}`",
        f"- training samples: {train.get('used')} of {train.get('rows')} "
        f"({train.get('truncated')} truncated from the left at turn boundaries, "
        f"{train.get('skipped')} skipped)",
        *_mixture_lines(summary.get("mixture")),
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
        *_metric_lines(summary, evaluation),
        "",
        "Per-character results and sample replies: `eval.md` / `eval.json`; the training curve: "
        "`training_curve.png` / `.json`; TensorBoard events: `tensorboard/`.",
        "",
        "## Loading",
        "",
        "```python",
        *_load_lines(family, adapter, tiny_random),
        "```",
        "",
        "Weights are safetensors only; `trust_remote_code` was "
        f"{'on' if config.get('trust_remote_code') else 'off'} for training.",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n"


def _mixture_lines(mixture: dict[str, Any] | None) -> list[str]:
    if not mixture:
        return []
    lines = ["- training mix (`train.mixture`, drawn from the seed): "]
    for source, available in mixture["available"].items():
        weight = mixture["weights"].get(source, 0)
        lines.append(
            f"  - `{source}`: weight {weight:g}, {mixture['drawn'][source]} drawn of {available}"
        )
    return lines


def _metric_lines(summary: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    gen = evaluation.get("generation", {})
    timing = summary.get("timing", {})
    first, last = _first_last(summary)
    return [
        f"- loss: {_num(evaluation.get('loss'))}, perplexity: {_num(evaluation.get('perplexity'), 2)}",
        f"- first / last training loss: {_num(first)} / {_num(last)}",
        f"- AI-exposure rate: {_num(gen.get('ai_exposure_rate'), 3)}, speaker leakage: "
        f"{_num(gen.get('speaker_leakage_rate'), 3)}, catchphrase hits: "
        f"{_num(gen.get('catchphrase_hit_rate'), 3)}",
        f"- distinct-1 / distinct-2: {_num(gen.get('distinct_1'), 3)} / "
        f"{_num(gen.get('distinct_2'), 3)}, mean reply words: {_num(gen.get('mean_reply_words'), 1)}",
        f"- training throughput: {timing.get('tokens_per_second')} tokens/s, "
        f"data-wait share {timing.get('data_wait_share')}",
    ]


def _load_lines(family: str | None, adapter: bool, tiny_random: bool) -> list[str]:
    """Return the documented loading call for this family and kind of output."""
    text_only = family == "causal-lm"
    proc = "AutoTokenizer" if text_only else "AutoProcessor"
    lines = [
        f"from transformers import {proc}",
        f"processor = {proc}.from_pretrained('<this folder>')",
    ]
    if not adapter:
        auto = "AutoModelForCausalLM" if text_only else "AutoModelForImageTextToText"
        return [
            f"from transformers import {auto}",
            *lines,
            f"model = {auto}.from_pretrained('<this folder>')",
        ]
    where = (
        "# run from the store folder: adapter_config names the base relative to the store"
        if tiny_random
        else "# adapter_config names the base model's hub id"
    )
    auto = "AutoPeftModelForCausalLM" if text_only else "AutoPeftModel"
    # A multimodal adapter records its model class (peft `auto_mapping`), so peft's generic
    # AutoPeftModel rebuilds e.g. Qwen2_5OmniThinkerForConditionalGeneration.
    return [
        f"from peft import {auto}",
        *lines,
        where,
        f"model = {auto}.from_pretrained('<this folder>')",
    ]


def _first_last(summary: dict[str, Any]) -> tuple[float | None, float | None]:
    losses = summary.get("losses") or []
    if not losses:
        return None, None
    return losses[0]["loss"], losses[-1]["loss"]
