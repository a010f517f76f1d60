"""What the command groups of the CLI share: exit codes, loading a recipe, finding a
store or a version, and turning the data job's failures into one line and an exit code.

Its own module so that `app.py` and the command groups it registers (`train.py`,
`models.py`) import it, and never each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

EXIT_RECIPE = 2
EXIT_TOO_MANY_BAD = 3


def load_recipe_or_exit(recipe_path: str, check_ops: bool = True):
    from pipeline.recipe import load_recipe
    from pipeline.record.config import RecipeError

    try:
        return load_recipe(recipe_path, check_ops=check_ops)
    except RecipeError as exc:
        typer.echo(f"recipe error: {exc}", err=True)
        raise typer.Exit(EXIT_RECIPE) from None


EXIT_FAILED = 1
STORE_HELP = (
    "store path (default: the recipe's store, then $ROLEFORGE_STORE, then ./roleforge-store)"
)


def store_of(name: str, store: str | None, recipe: str | None):
    """Return the Store of dataset `name`: --store, else the recipe's store, else the default."""
    import os

    from pipeline.store.fs import UnsupportedStore
    from pipeline.store.read import Store
    from pipeline.store.store_fs import store_fs

    options = None
    if recipe is not None:
        loaded = load_recipe_or_exit(recipe)
        store = store or loaded.store_uri
        options = loaded.store_options
    uri = store or os.environ.get("ROLEFORGE_STORE") or "roleforge-store"
    try:
        fs, path = store_fs(uri, **(options.fs_kwargs() if options else {}))
        return Store(path, name, fs)
    except (UnsupportedStore, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def version_ref(ref: str, store: str | None, recipe: str | None):
    from pipeline.store.read import parse_ref

    try:
        name, version = parse_ref(ref)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    return store_of(name, store, recipe), version


def checked_version(ref: str, store: str | None, recipe: str | None):
    """Return (Store, Manifest) of `ref` with the manifest and file sizes proven (cheap; no
    shard re-hash), or exit with the not-found line."""
    from pipeline.store.read import VersionNotFound

    s, version = version_ref(ref, store, recipe)
    try:
        return s, s.checked_manifest(version, hash_shards=False)
    except VersionNotFound as exc:
        raise not_found(exc) from None


def not_found(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(EXIT_FAILED)


@contextmanager
def data_job_errors() -> Iterator[None]:
    """Turn the data job's failures into a one-line error and the command's exit code."""
    from pipeline.record.config import RecipeError
    from pipeline.record.rejection import TooManyBadRecords
    from pipeline.store.atomic import InjectedFault
    from pipeline.store.commit import CommitCheckFailed
    from pipeline.store.fs import StoreNotWritable, UnsupportedStore
    from pipeline.store.lock import StoreBusy

    try:
        yield
    except RecipeError as exc:
        typer.echo(f"recipe error: {exc}", err=True)
        raise typer.Exit(EXIT_RECIPE) from None
    except TooManyBadRecords as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_TOO_MANY_BAD) from None
    except (CommitCheckFailed, InjectedFault, UnsupportedStore, StoreNotWritable, StoreBusy) as exc:
        typer.echo(f"error: {exc}; nothing was published", err=True)
        raise typer.Exit(EXIT_FAILED) from None
