"""The `roleforge` command line. Heavy libraries are imported inside each command."""

from __future__ import annotations

import json
import os
import sys

import typer

from pipeline.cli.common import (
    EXIT_FAILED,
    EXIT_RECIPE,
    EXIT_TOO_MANY_BAD,
    STORE_HELP,
    checked_version,
    data_job_errors,
    load_recipe_or_exit,
    not_found,
    store_of,
    version_ref,
)
from pipeline.cli.inspect import register as _register_inspect
from pipeline.cli.models import register as _register_models
from pipeline.cli.train import register as _register_train
from pipeline.cli.view import register as _register_view
from pipeline.execution.ray_reaper import stop_ray

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Ingest, augment, version and fine-tune on multimodal role-play dialogue corpora.",
)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"roleforge {version('roleforge')}")
        raise typer.Exit()


@app.callback()
def _commands(
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version"
    ),
) -> None:
    # A callback keeps `roleforge ingest RECIPE` a subcommand even while it is the only command.
    pass


@app.command()
def ingest(
    recipe: str = typer.Argument(..., help="recipe YAML"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Read and validate every source; quarantine what is broken; report counts."""
    from pipeline.execution.ingest import run_ingest
    from pipeline.record.config import RecipeError
    from pipeline.record.rejection import TooManyBadRecords

    r = load_recipe_or_exit(recipe)
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


@app.command()
def run(
    recipe: str = typer.Argument(..., help="recipe YAML"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    rehash: bool = typer.Option(
        False,
        "--rehash",
        help="read every input file to pin it, not only those whose size/mtime/ctime changed",
    ),
) -> None:
    """Run the whole data job (and training when the recipe has `train:`); publish a version."""
    from pipeline.execution.unchanged import unchanged_run

    # The data job checks the augment ops itself, unless it finds the run unchanged first.
    r = load_recipe_or_exit(recipe, check_ops=False)
    with data_job_errors():
        # An unchanged rerun is answered from the store and the pins alone: the data job's
        # imports (Arrow, the stages, the progress bars) are most of what it would cost.
        result = unchanged_run(r, rehash=rehash)
    if result is None:
        from pipeline.cli.console import RichStageProgress
        from pipeline.execution.job import run_recipe

        with data_job_errors(), RichStageProgress() as progress:
            result = run_recipe(r, progress, rehash=rehash, checked=True)
    failed = None
    if r.train is not None:
        from pipeline.execution.job import train_result
        from trainers import TRAIN_SETUP_ERRORS

        try:
            train_result(r, result)
        except TRAIN_SETUP_ERRORS as exc:
            failed = f"error: {r.name}@v{result.version} is published, but training failed: {exc}"
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        from pipeline.cli.console import print_run_summary

        print_run_summary(result.to_dict())
    if failed:
        typer.echo(failed, err=True)
        raise typer.Exit(EXIT_FAILED)


@app.command()
def versions(
    name: str = typer.Argument(..., help="dataset name"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    recipe: str | None = typer.Option(None, "--recipe", help="take the store from this recipe"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """List the committed versions of a dataset."""
    from pipeline.cli.console import print_versions

    s = store_of(name, store, recipe)
    manifests = [s.manifest(v) for v in s.versions()]
    if as_json:
        rows = [
            {
                "version": m.version,
                "parent_version": m.parent_version,
                "created_at": m.created_at,
                "run_id": m.run_id,
                "content_id": m.content_id,
                "splits": m.splits,
                "path": s.fs.uri(s.version_dir(m.number)),
            }
            for m in manifests
        ]
        typer.echo(json.dumps({"name": name, "store": s.location, "versions": rows}, indent=2))
    elif not manifests:
        typer.echo(f"{name}: no committed versions in {s.location}")
    else:
        print_versions(name, manifests)


@app.command()
def show(
    ref: str = typer.Argument(..., help="NAME or NAME@vN (default: the latest version)"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    recipe: str | None = typer.Option(None, "--recipe", help="take the store from this recipe"),
    as_json: bool = typer.Option(False, "--json", help="print the manifest"),
) -> None:
    """Show one version: its manifest, counts and shards."""
    from pipeline.cli.console import print_manifest

    # The numbers shown come from the manifest: prove it and the file sizes first (cheap);
    # `verify` re-hashes everything.
    s, manifest = checked_version(ref, store, recipe)
    if as_json:
        typer.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        print_manifest(manifest, s.fs.uri(s.version_dir(manifest.number)))


@app.command()
def diff(
    before: str = typer.Argument(..., help="NAME@vA"),
    after: str = typer.Argument(..., help="NAME@vB"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    recipe: str | None = typer.Option(None, "--recipe", help="take the store from this recipe"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Records added, removed and changed by id between two versions, and per-split deltas."""
    from pipeline.cli.console import print_diff
    from pipeline.store.diff import diff_versions
    from pipeline.store.read import VersionNotFound

    s, version_a = version_ref(before, store, recipe)
    s_b, version_b = version_ref(after, store, recipe)
    if s_b.name != s.name:
        typer.echo("error: diff compares two versions of one dataset", err=True)
        raise typer.Exit(EXIT_FAILED)
    try:
        version_a = version_a or s.manifest().number
        version_b = version_b or s.manifest().number
        result = diff_versions(s, version_a, version_b).to_dict()
    except VersionNotFound as exc:
        raise not_found(exc) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_diff(result)


@app.command()
def verify(
    ref: str = typer.Argument(..., help="NAME or NAME@vN (default: the latest version)"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    recipe: str | None = typer.Option(None, "--recipe", help="take the store from this recipe"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Re-hash every shard and card against the manifest; exit 1 on any mismatch."""
    from pipeline.cli.console import print_verify
    from pipeline.store.read import VersionNotFound
    from pipeline.store.verify import verify_version

    s, version = version_ref(ref, store, recipe)
    try:
        report = verify_version(s, version).to_dict()
    except VersionNotFound as exc:
        raise not_found(exc) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_verify(report)
    if not report["ok"]:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def gc(
    name: str = typer.Argument(..., help="dataset name"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    recipe: str | None = typer.Option(None, "--recipe", help="take the store from this recipe"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would go, remove nothing"),
    min_age: float = typer.Option(
        3600.0,
        "--min-age",
        help="also spare paths with anything modified less than this many seconds ago "
        "(live runs and commits are always spared)",
    ),
    cache_versions: int = typer.Option(
        1,
        "--cache-versions",
        min=0,
        help="keep in the record cache what the newest N versions were made of (0: empty it)",
    ),
    models_history: bool = typer.Option(
        False,
        "--models-history",
        help="also remove finished models promoted once but not now (rollback cannot return)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Remove staging folders and files that no manifest or live run references, model
    folders of unfinished or never-compared runs, and prune the record cache (the promoted
    model and finished models are kept)."""
    from pipeline.store.gc import collect_garbage
    from pipeline.store.lock import StoreBusy
    from trainers.model_gc import removable_models
    from trainers.registry import ModelRegistry

    s = store_of(name, store, recipe)
    try:
        report = collect_garbage(
            s,
            dry_run=dry_run,
            min_age_s=min_age,
            cache_versions=cache_versions,
            also=lambda: removable_models(ModelRegistry(s), history=models_history),
        ).to_dict()
    except StoreBusy as exc:
        raise not_found(exc) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for path in report["removed"]:
        typer.echo(f"{verb} {path}")
    typer.echo(f"{name}: {verb} {len(report['removed'])} paths, {report['freed_bytes']:,} bytes")
    if report["cache_note"]:
        typer.echo(f"record cache: {report['cache_note']}")


@app.command()
def preview(
    recipe: str = typer.Argument(..., help="recipe YAML"),
    n: int = typer.Option(8, "-n", "--n", min=1, help="records to sample"),
    out: str = typer.Option("preview.html", "-o", "--out", help="HTML file to write"),
) -> None:
    """Write one self-contained HTML page: sampled records beside their augmented variants."""
    from pipeline.cli.preview import render_preview

    r = load_recipe_or_exit(recipe)
    typer.echo(f"wrote {render_preview(r, n, out)}")


_register_train(app)
_register_models(app)  # retrain, models, promote
_register_view(app)
_register_inspect(app)


# The collector's generation thresholds for a command (`main`).
GC_THRESHOLDS = (50_000, 20, 20)


def main() -> None:
    """Run the command line; an OS-level failure (full disk, unwritable or special store,
    unreadable model folder) ends with one line on stderr and exit 1, not a traceback."""
    # roleforge draws its own progress; the model libraries' per-file bars ("Loading
    # weights", "Writing model shards") printed between its lines. Read when transformers
    # and huggingface_hub are first imported, which the commands do lazily, after this.
    # HF_HUB_DISABLE_PROGRESS_BARS=0 brings them back.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import gc  # here: `gc` in this module is the `roleforge gc` command

    # A command imports ~110k long-lived objects (Arrow, pandas, pydantic's schemas, the op
    # libraries) and then builds many small ones; at the default (700, 10, 10) the collector
    # ran ~340 times in a rerun with 20 misses, scanning those imports in its older
    # generations: 0.11 s of 1.3 s of CPU, 0.05 s at these thresholds (mypy's main does
    # the same for its start-up).
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        app(standalone_mode=True)
    except OSError as exc:
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        print(f"error: {reason}{where}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    finally:
        stop_ray()  # before the interpreter's exit: Ray's own exit handler idles ~1.5 s
        _exit_without_collecting()


def _exit_without_collecting() -> None:
    """Leave every object alive now out of the interpreter's collections at exit.

    The command is done; what is left is the interpreter's teardown, whose garbage
    collections walk every object of every module imported (Arrow, pandas, pydantic's
    schemas, the op libraries): ~0.13 s of CPU per process, 10% of a rerun with 20 misses.
    `gc.freeze` moves them to the permanent generation, which those collections skip;
    the rest of the exit is as usual (threads joined, atexit handlers, streams flushed,
    objects freed as their modules are cleared). Only cyclic garbage is left to the OS,
    whose `__del__` Python never promises to run at exit.
    """
    import gc  # here: `gc` in this module is the `roleforge gc` command

    gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
