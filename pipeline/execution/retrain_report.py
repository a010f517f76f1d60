"""report.md of a retrain and its training-curve plot, both drawn from report.json's facts."""

from __future__ import annotations

import logging
from typing import Any

from trainers.comparison import fmt_metric as _num

log = logging.getLogger(__name__)


def _delta(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def plot_training_curve(training: Any, path: str) -> str | None:
    """Write the train and validation loss curves to `path` (PNG); return it, or None when
    the run logged no loss."""
    if not training.losses:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    ax.plot(
        [e["step"] for e in training.losses],
        [e["loss"] for e in training.losses],
        label="train loss",
        linewidth=1.2,
    )
    if training.eval_losses:
        ax.plot(
            [e["step"] for e in training.eval_losses],
            [e["eval_loss"] for e in training.eval_losses],
            "o-",
            label="validation loss",
        )
    if training.best_checkpoint:
        step = int(training.best_checkpoint.rsplit("-", 1)[-1])
        ax.axvline(step, color="grey", linestyle=":", label=f"kept checkpoint (step {step})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (character tokens)")
    ax.set_title(f"training curve, model {training.run_id}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def _dataset_lines(d: dict[str, Any]) -> list[str]:
    if d["new_version"]:
        made = f"new version; parent v{d['parent_version']}" if d["parent_version"] else "first"
    else:
        made = "unchanged: the latest version already holds this data"
    splits = ", ".join(f"{s} {n}" for s, n in d["splits"].items())
    lines = [
        "## Dataset",
        "",
        f"- version: **{d['name']}@v{d['version']}** ({made}); data job {d['data_job']}",
        f"- content_id: `{d['content_id']}`",
        f"- original records reused / computed: {d['reused']} / {d['computed']} ({d['basis']})",
        f"- rows per split: {splits}",
    ]
    diff = d.get("diff")
    if diff:
        rows = ", ".join(f"{s} {c['before']} -> {c['after']}" for s, c in diff["splits"].items())
        lines.append(
            f"- against v{d['parent_version']}: {diff['added']} records added, "
            f"{diff['removed']} removed, {diff['changed']} changed; rows {rows}"
        )
    return lines + [""]


def _training_lines(t: dict[str, Any], curve: str | None) -> list[str]:
    start = "the base model" if t["init"] == "base" else f"the promoted model {t['init']}"
    lines = [
        "## Training",
        "",
        f"- started from {start}; {t['global_step']} optimizer steps",
        f"- checkpoint kept: {t['best_checkpoint'] or 'the last step'}",
        "",
    ]
    if curve:
        lines += [f"![training curve]({curve})", ""]
    evals = {e["step"]: e["eval_loss"] for e in t["eval_losses"]}
    lines += ["| step | train loss | validation loss |", "|---:|---:|---:|"]
    for e in t["losses"]:
        lines.append(f"| {e['step']} | {_num(e['loss'])} | {_num(evals.get(e['step']))} |")
    return lines + [""]


def _evidence_lines(ev: dict[str, Any] | None) -> list[str]:
    if not ev:
        return ["No paired evidence: a model's evaluation has no per-conversation losses."]
    lines = [
        f"Paired evidence (new minus baseline, per test conversation, {ev['pairs']} "
        f"conversations): mean eval_loss difference **{ev['mean']:+.4f}**, "
        f"{ev['confidence']:.0%} bootstrap confidence interval [{ev['low']:+.4f}, "
        f"{ev['high']:+.4f}] ({ev['resamples']} resamples, seed {ev['seed']}): "
        f"**{ev['case']}**."
    ]
    if ev["case"] == "no detectable difference" and ev["conversations_needed"]:
        lines.append(
            f"About {ev['conversations_needed']} test conversations would show a difference "
            "of this size (80% power)."
        )
    return lines


def _judge_lines(new: dict[str, Any] | None, baseline: dict[str, Any] | None) -> list[str]:
    if not new:
        return []
    who = new["identity"]
    lines = [
        "",
        f"LLM judge `{who['model']}`, rubric {who['rubric']} (sha256 "
        f"`{who['rubric_sha256'][:12]}`), temperature {who['temperature']}, seed {who['seed']}: "
        f"mean score {_num(baseline['mean'] if baseline else None)} (baseline) -> "
        f"{_num(new['mean'])} (new), 1-5.",
    ]
    for who_, score in new["per_character"].items():
        before = (baseline or {}).get("per_character", {}).get(who_)
        lines.append(f"- {who_}: {_num(before)} -> {_num(score)}")
    return lines


def _comparison_lines(report: dict[str, Any]) -> list[str]:
    decision, base = report["decision"], report["baseline"]
    es = decision["eval_set"]
    if base["id"] is None:
        who = f"the untrained base model (`{base['path']}`)"
    else:
        how = "re-evaluated on this split" if base["reevaluated"] else "its stored evaluation"
        who = f"the promoted model {base['id']} ({how})"
    lines = [
        "## Comparison",
        "",
        f"Both models scored on **{es['dataset']}@v{es['version']} `{es['split']}`**: "
        f"{es['rows']} rows, shards sha256 `{es['sha256'][:16]}`; never numbers from two "
        f"test sets. Baseline: {who}.",
        "",
        "| metric | baseline | new | delta | per conversation (CI) | rule | case | passes |",
        "|---|---:|---:|---:|---|---|---|---|",
    ]
    for d in decision["deltas"]:
        p = d["paired"]
        paired = f"{p['mean']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}]" if p else ""
        lines.append(
            f"| {d['metric']} ({'lower' if d['lower_is_better'] else 'higher'} is better) | "
            f"{_num(d['baseline'])} | {_num(d['new'])} | {_delta(d['delta'])} | {paired} | "
            f"{d['rule']} | {d['case']} | {'yes' if d['passed'] else '**no**'} |"
        )
    lines += ["", *_evidence_lines(decision.get("evidence"))]
    lines += _judge_lines(report["model"]["eval"].get("judge"), base["eval"].get("judge"))
    lines += ["", "Test loss per character:", ""]
    lines += ["| character | baseline | new | delta |", "|---|---:|---:|---:|"]
    for who, row in decision["per_character"].items():
        lines.append(
            f"| {who} | {_num(row['baseline'])} | {_num(row['new'])} | {_delta(row['delta'])} |"
        )
    return lines + [""]


def _replies_lines(replies: dict[str, Any]) -> list[str]:
    from trainers.card import replies_markdown

    baseline = {r["id"]: r for r in replies.get("baseline") or []}
    return replies_markdown(replies.get("new") or [], baseline)


def report_markdown(report: dict[str, Any], curve: str | None) -> str:
    """Return report.md: the decision first, then dataset, training and comparison."""
    d, model = report["dataset"], report["model"]
    verdict = (
        f"**promoted** model {model['id']}"
        if report["promoted"]
        else f"**not promoted**: model {model['id']} is kept out; the promoted model stays"
    )
    held = report["held_out"]
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report["seconds"].items())
    lines = [
        f"# Retrain report: {d['name']}@v{d['version']}, model {model['id']}",
        "",
        f"Decision: {verdict}.",
        "",
        f"Reason: {report['decision']['reason']}.",
        "",
        *_dataset_lines(d),
        *_training_lines(report["training"], curve),
        *_comparison_lines(report),
        *_replies_lines(report.get("replies") or {}),
        "## Held-out discipline",
        "",
        f"- checkpoint chosen by: {held['checkpoint_chosen_by']}",
        f"- test split read by: {', '.join(held['test_split_read_by'])} only",
        "",
        f"Time: {seconds}.",
        "",
    ]
    return "\n".join(lines)
