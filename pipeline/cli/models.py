"""`roleforge retrain`, `roleforge models`, `roleforge promote`: the retrain job and the registry."""

from __future__ import annotations

import json
import os
from typing import Any

import typer

from pipeline.cli.common import (
    EXIT_FAILED,
    EXIT_RECIPE,
    data_job_errors,
    load_recipe_or_exit,
    not_found,
    store_of,
)

EXIT_REFUSED = 4  # retrain: the new model was not promoted


def retrain(
    recipe: str = typer.Argument(..., help="recipe YAML with a train: section"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Data job + fine-tune + compare with the promoted model + promote or refuse (exit 4).

    The comparison runs on the new version's test split; report.md and report.json go into
    the new model's folder.
    """
    from pipeline.cli.console import RichStageProgress
    from pipeline.execution.retrain import run_retrain
    from trainers import ModalityMismatch, UnsupportedModel
    from trainers.registry import CannotContinue

    r = load_recipe_or_exit(recipe)
    try:
        with data_job_errors(), RichStageProgress() as progress:
            report = run_retrain(r, progress)
    except (ModalityMismatch, UnsupportedModel, CannotContinue) as exc:
        typer.echo(f"error: training failed: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        typer.echo(json.dumps(report.summary(), indent=2))
    else:
        _print_retrain(report.to_dict(), report.report_path)
    if not report.promoted:
        typer.echo(f"not promoted: {report.decision.reason}", err=True)
        raise typer.Exit(EXIT_REFUSED)


def _print_retrain(report: dict[str, Any], path: str) -> None:
    d, t, decision = report["dataset"], report["training"], report["decision"]
    made = "new" if d["new_version"] else "unchanged"
    typer.echo(
        f"dataset {d['name']}@v{d['version']} ({made}, data job {d['data_job']}): "
        f"reused {d['reused']}, computed {d['computed']} originals; "
        f"content id {d['content_id'][:16]}"
    )
    if d["diff"]:
        diff = d["diff"]
        typer.echo(
            f"  vs v{d['parent_version']}: +{diff['added']} added, -{diff['removed']} removed, "
            f"{diff['changed']} changed"
        )
    start = "base" if t["init"] == "base" else f"promoted {t['init']}"
    typer.echo(
        f"model {t['run_id']}: from {start}, {t['global_step']} steps, kept "
        f"{t['best_checkpoint'] or 'the last step'} ({report['held_out']['checkpoint_chosen_by']})"
    )
    es = decision["eval_set"]
    base = report["baseline"]
    if base["id"] is None:
        who = "untrained base"
    else:
        who = f"promoted {base['id']}" + (" (re-evaluated)" if base["reevaluated"] else "")
    typer.echo(f"compared with {who} on {es['dataset']}@v{es['version']} test ({es['rows']} rows):")
    for m in decision["deltas"]:
        delta = "n/a" if m["delta"] is None else f"{m['delta']:+.4f}"
        paired = m["paired"]
        per_conversation = (
            f"; per conversation {paired['mean']:+.4f} [{paired['low']:+.4f}, {paired['high']:+.4f}]"
            if paired and m["metric"] != "eval_loss"  # eval_loss's interval has its own line
            else ""
        )
        typer.echo(
            f"  {m['metric']}: {_num(m['baseline'])} -> {_num(m['new'])} ({delta}, "
            f"{m['rule']}: {m['case']}{per_conversation}) {'ok' if m['passed'] else 'FAILS'}"
        )
    ev = decision.get("evidence")
    if ev:
        typer.echo(
            f"  paired eval_loss difference per conversation: {ev['mean']:+.4f}, "
            f"{ev['confidence']:.0%} bootstrap CI [{ev['low']:+.4f}, {ev['high']:+.4f}] over "
            f"{ev['pairs']} conversations: {ev['case'].upper()}"
            + (
                f" (about {ev['conversations_needed']} would show it)"
                if ev["case"] == "no detectable difference" and ev["conversations_needed"]
                else ""
            )
        )
    verdict = "PROMOTED" if report["promoted"] else "NOT PROMOTED"
    typer.echo(f"{verdict}: {decision['reason']}")
    typer.echo(f"report: {_shown(path)}")


def _shown(path: str) -> str:
    """Return a local path below the working folder relative to it (as the user typed the
    store); anything else (an object-store address, a path elsewhere) whole."""
    if "://" in path or not os.path.isabs(path):
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _num(value: Any) -> str:
    from trainers.comparison import fmt_metric

    return fmt_metric(value)


def models(
    name: str = typer.Argument(..., help="dataset name"),
    store: str | None = typer.Option(None, "--store", help="store path"),
    recipe: str | None = typer.Option(None, "--recipe", help="take the store from this recipe"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """List the trained models of a dataset with their lineage and metrics; mark the promoted."""
    from trainers.registry import ModelRegistry

    registry = ModelRegistry(store_of(name, store, recipe))
    entries = registry.models()
    pointer = registry.pointer()
    promoted = pointer.model_id if pointer else None
    if as_json:
        out = {
            "name": name,
            "promoted": promoted,
            "generation": pointer.generation if pointer else None,
            "models": [
                {**e.to_dict(), "path": registry.fs.uri(e.path), "promoted": e.id == promoted}
                for e in entries
            ],
            "history": [vars(h) for h in pointer.history] if pointer else [],
        }
        typer.echo(json.dumps(out, indent=2))
        return
    if not entries:
        typer.echo(f"{name}: no trained models in {registry.location}")
        return
    rows = [("", "model", "dataset", "content_id", "base", "init", "test_loss", "ai_exposure")]
    for e in entries:
        gen = e.eval.get("generation") or {}
        rows.append(
            (
                "*" if e.id == promoted else "!" if e.uncompared else "",
                e.id,
                f"v{e.dataset['version']}",
                e.dataset["content_id"][:12],
                e.base_model,
                e.init or "base",
                _num(e.eval.get("loss")),
                _num(gen.get("ai_exposure_rate")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            c.rjust(w) if i >= 6 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        typer.echo("  ".join(cells).rstrip())
    typer.echo(
        f"* promoted: {promoted} (generation {pointer.generation})" if pointer else "none promoted"
    )
    if any(e.uncompared for e in entries):
        typer.echo("! never compared: its retrain died before the comparison (gc removes it)")


def promote(
    name: str = typer.Argument(..., help="dataset name"),
    model_id: str | None = typer.Argument(None, help="the model to promote"),
    rollback: bool = typer.Option(False, "--rollback", help="return to the previous one"),
    store: str | None = typer.Option(None, "--store", help="store path"),
    recipe: str | None = typer.Option(None, "--recipe", help="take the store from this recipe"),
) -> None:
    """Promote a model by hand, or roll back to the one promoted before."""
    from trainers.registry import ModelRegistry, NothingToRollBack, UnknownModel

    if rollback == (model_id is not None):
        typer.echo("error: give a MODEL_ID or --rollback, not both or neither", err=True)
        raise typer.Exit(EXIT_RECIPE)
    registry = ModelRegistry(store_of(name, store, recipe))
    try:
        if rollback:
            pointer = registry.rollback()
        else:
            pointer = registry.promote(model_id, "promoted by hand")
    except (UnknownModel, NothingToRollBack) as exc:
        raise not_found(exc) from None
    event = pointer.history[-1]
    typer.echo(
        f"{name}: {event.action} -> {pointer.model_id} (was {event.previous or 'none'}; "
        f"generation {pointer.generation})"
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the `roleforge` app."""
    for command in (retrain, models, promote):
        app.command()(command)
