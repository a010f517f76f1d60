"""The `roleforge` command line. Heavy libraries are imported inside each command."""

from __future__ import annotations

import json
import sys

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Ingest, augment, version and fine-tune on multimodal role-play dialogue corpora.",
)


@app.callback()
def _commands() -> None:
    # A callback keeps `roleforge ingest RECIPE` a subcommand even while it is the only command.
    pass


EXIT_RECIPE = 2
EXIT_TOO_MANY_BAD = 3


def _load(recipe_path: str):
    from pipeline.recipe import RecipeError, load_recipe

    try:
        return load_recipe(recipe_path)
    except RecipeError as exc:
        typer.echo(f"recipe error: {exc}", err=True)
        raise typer.Exit(EXIT_RECIPE) from None


@app.command()
def ingest(
    recipe: str = typer.Argument(..., help="recipe YAML"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Read and validate every source; quarantine what is broken; report counts."""
    from pipeline.ingest import TooManyBadRecords, run_ingest
    from pipeline.recipe import RecipeError

    r = _load(recipe)
    try:
        report = run_ingest(r)
    except RecipeError as exc:  # a source path or characters file the recipe names is missing
        typer.echo(f"recipe error: {exc}", err=True)
        raise typer.Exit(EXIT_RECIPE) from None
    except TooManyBadRecords as exc:
        if as_json:
            typer.echo(json.dumps(exc.report.to_dict(), indent=2))
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_TOO_MANY_BAD) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        report.print_table()


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
