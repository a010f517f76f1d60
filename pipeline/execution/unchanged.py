"""An unchanged rerun, recognised before any stage work: the latest version was built from
exactly these inputs (sha256, media included), recipe hash, card metadata and code
identity, so it is the answer, and nothing is read, no Ray starts, no stage runs.

Apart from the data job (`job.py`) on purpose: `roleforge run` asks this first
(`unchanged_run`), with the recipe, the store's manifest and the input files' pins alone,
so an unchanged rerun imports neither Arrow nor numpy, the stages, the readers' parsers
nor Ray; its start-up is most of what it costs. The data job asks the same question the
same way (`find_unchanged`) when it is run from the API.
"""

from __future__ import annotations

import logging
import os
import time

from pipeline.execution.provenance import (
    PinCache,
    code_version,
    forget_pins,
    hashed_files,
    pin_locations,
    unchanged_inputs,
)
from pipeline.execution.run_result import RecordReuse, RunResult
from pipeline.recipe import Recipe
from pipeline.record.ids import new_run_id
from pipeline.store.commit import card_metadata
from pipeline.store.fs import LocalFS, StoreFS, StoreNotWritable
from pipeline.store.manifest import Manifest
from pipeline.store.read import Store
from pipeline.store.store_fs import store_fs

log = logging.getLogger(__name__)


def pin_cache(recipe: Recipe, store: Store, fs: StoreFS) -> PinCache | None:
    """Return the dataset's pin cache (`<store>/<name>/cache/pins.json`, beside the record
    cache), None when the recipe turns the cache off."""
    if not recipe.execution.cache:
        return None
    return PinCache(store.pins_path(), fs)


def check_writable(recipe: Recipe, store: Store, fs: StoreFS) -> None:
    """Raise StoreNotWritable before any work when the store or cards folder is not ours
    to write."""
    fs.check_writable(store.root)
    for sub in ("versions", "_staging", "quarantine"):
        if fs.exists(os.path.join(store.root, sub)):
            fs.check_writable(os.path.join(store.root, sub))
    # The cards' git copy is always a local folder, whatever the store.
    LocalFS().check_writable(os.path.join(recipe.resolve(recipe.cards_dir), recipe.name))


def same_recipe_and_code(recipe: Recipe, latest: Manifest | None) -> bool:
    """Return whether `latest` was made under this recipe hash and code identity."""
    return (
        latest is not None
        and latest.recipe_hash == recipe.recipe_hash
        and latest.code_version.identity() == code_version().identity()
    )


def find_unchanged(
    recipe: Recipe, store: Store, fs: StoreFS, run_id: str, rehash: bool = False
) -> tuple[Manifest | None, RunResult | None]:
    """Return the latest manifest and, when it is unchanged (module docstring), the run's
    result; the result is None when there is work to do. The input files are pinned
    through the dataset's pin cache (`rehash`: every file is read again)."""
    pins = pin_cache(recipe, store, fs)
    if rehash:
        forget_pins()
    elif pins is not None:
        pins.load()
    latest = store.latest_manifest()
    result = _unchanged_result(recipe, store, latest, run_id)
    if result is not None and latest is not None and pins is not None and hashed_files():
        pins.save(pin_locations(recipe, latest.inputs))
    return latest, result


def unchanged_run(recipe: Recipe, rehash: bool = False) -> RunResult | None:
    """Return the result of running the recipe when its latest version is unchanged, else
    None (the data job then runs, and raises whatever error the recipe or store has: a
    missing source, an unwritable store)."""
    started = time.perf_counter()
    fs, path = store_fs(recipe.store_uri, **recipe.store_options.fs_kwargs())
    store = Store(path, recipe.name, fs)
    try:
        check_writable(recipe, store, fs)
    except StoreNotWritable:
        return None  # the data job reports it, after the sources' errors, as it always did
    _, result = find_unchanged(recipe, store, fs, new_run_id(), rehash)
    if result is not None:
        result.seconds = time.perf_counter() - started
    return result


def _unchanged_result(
    recipe: Recipe, store: Store, latest: Manifest | None, run_id: str
) -> RunResult | None:
    """Return the latest version as this run's unchanged result when it was built from
    exactly these inputs, recipe hash, card metadata and code identity. Else None."""
    if latest is None or latest.reuse is None or not same_recipe_and_code(recipe, latest):
        return None  # no reuse counts: its inputs may lack media pins to compare
    # A licence is outside the recipe hash but on the card: its change is a new version.
    if card_metadata(latest.recipe) != card_metadata(recipe.model_dump(mode="json")):
        return None
    if not unchanged_inputs(recipe, latest.inputs):
        return None
    version = latest.number
    log.info("%s: inputs, recipe and code equal v%d's; nothing to do", latest.name, version)
    originals = latest.reuse.reused + latest.reuse.computed  # its run's, all reused now
    return RunResult(
        name=recipe.name,
        version=version,
        content_id=latest.content_id,
        path=store.version_dir(version),
        unchanged=True,
        splits=dict(latest.splits),
        counts={name: c.model_dump(by_alias=True) for name, c in latest.counts.items()},
        split_groups=latest.split_groups,
        run_id=run_id,
        manifest_path=store.manifest_path(version),
        quarantine_path=None,
        reuse=RecordReuse(originals, 0, f"inputs, recipe and code equal v{version}'s"),
        stages_skipped=True,
        unmapped_fields=latest.unmapped_fields,
        quality=latest.quality,
    )
