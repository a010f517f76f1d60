"""`roleforge train`, `export` and `export-model`: fine-tune, and hand results to other tools."""

from __future__ import annotations

import json

import typer

from pipeline.cli.common import EXIT_RECIPE, not_found, version_ref


def _config(path: str | None):
    """Return the TrainConfig of a YAML file (None for none); exit 2 with one line if bad."""
    if path is None:
        return None
    import yaml
    from pydantic import ValidationError

    from pipeline.recipe import format_validation_error
    from trainers.config import TrainConfig

    try:
        with open(path, encoding="utf-8") as f:
            return TrainConfig.model_validate(yaml.safe_load(f) or {})
    except (OSError, yaml.YAMLError) as exc:
        typer.echo(f"config error: {exc}", err=True)
    except ValidationError as exc:
        typer.echo(f"config error: {format_validation_error(exc)}", err=True)
    raise typer.Exit(EXIT_RECIPE)


def train(
    ref: str = typer.Argument(..., help="NAME@vN (default: the latest version)"),
    store: str | None = typer.Option(None, "--store", help="store path"),
    config: str | None = typer.Option(
        None, "--config", help="train YAML (default: the version's recipe `train:`)"
    ),
    resume: bool = typer.Option(
        False, "--resume", help="continue the newest run of this version from its last checkpoint"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Fine-tune a role-play model on a committed version; evaluate it; write a model card."""
    from pipeline.store.read import VersionNotFound
    from trainers import TRAIN_SETUP_ERRORS, train_version

    cfg = _config(config)
    s, version = version_ref(ref, store, None)
    try:
        result = train_version(s.location, s.name, version, cfg, resume=resume)
    except (VersionNotFound, *TRAIN_SETUP_ERRORS) as exc:
        raise not_found(exc) from None
    out = result.to_dict()
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    ev = out["eval"]
    typer.echo(f"model: {out['model_path']}")
    typer.echo(f"train loss {out['train_loss_first']} -> {out['train_loss_last']}")
    typer.echo(f"test loss {ev.get('loss')} perplexity {ev.get('perplexity')} (see eval.md)")
    typer.echo("curve: training_curve.png; TensorBoard: tensorboard --logdir <model>/tensorboard")


def export(
    ref: str = typer.Argument(..., help="NAME@vN (default: the latest version)"),
    out: str = typer.Argument(..., help="output folder (new or empty)"),
    to: str = typer.Option(..., "--to", help="llamafactory, trl, sharegpt, openai or swift"),
    store: str | None = typer.Option(None, "--store", help="store path"),
    system_template: str | None = typer.Option(
        None, "--system-template", help="persona prompt (default: the recipe's train one)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Write a version for another trainer: JSON Lines per split, media files, dataset_info."""
    from pipeline.store.read import VersionNotFound
    from trainers.dataset_export import ExportError, export_version

    s, version = version_ref(ref, store, None)
    try:
        report = export_version(s.location, s.name, version, to, out, system_template).to_dict()
    except (VersionNotFound, ExportError) as exc:
        raise not_found(exc) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    rows = ", ".join(f"{k} {v}" for k, v in report["rows"].items())
    typer.echo(f"wrote {report['format']} export to {out}: {rows}; {report['media_files']} media")
    typer.echo(
        f"greetings folded into the system prompt: {report['greetings_folded']}; trailing user "
        f"turns dropped: {report['trailing_user_turns_dropped']}; skipped: {report['skipped'] or 0}"
    )


def export_model(
    model_dir: str = typer.Argument(..., help="a run folder: <store>/<name>/models/<run_id>"),
    out: str = typer.Argument(..., help="output folder (new or empty)"),
    merge: bool = typer.Option(False, "--merge", help="merge the LoRA adapter into the weights"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Write a trained model as a folder that loads with from_pretrained (merged with --merge)."""
    from trainers.model_export import ModelExportError, export_model

    try:
        result = export_model(model_dir, out, merge).to_dict()
    except ModelExportError as exc:
        raise not_found(exc) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    kind = "merged weights" if result["merged"] else "model files"
    typer.echo(f"wrote {kind} to {out}: {', '.join(result['files'])}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the `roleforge` app."""
    app.command()(train)
    app.command()(export)
    app.command("export-model")(export_model)
