"""Removing what no manifest references: staging folders, uncommitted version folders,
stray files inside versions, and quarantine files of runs that published nothing; and
pruning the record cache to what the newest versions were made of.

Never what is in use: gc holds the commit lock while it lists and removes (so no version
is half-made meanwhile), spares the staging folder and quarantine file of every run whose
lease is held (pipeline/store/lock.py), and by default spares anything changed in the last
hour as well, for runs started by an older roleforge that took no lease.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.store.cache import RecordCache
from pipeline.store.fs import StoreFS
from pipeline.store.lock import LEASE_FILE, commit_lock, live_runs, locks_dir, run_is_live
from pipeline.store.manifest import Manifest
from pipeline.store.read import Store, VersionNotFound
from pipeline.store.shards import read_shard_batches

DEFAULT_MIN_AGE_S = 3600.0
# The record cache keeps what the newest this many versions were made of.
DEFAULT_CACHE_VERSIONS = 1

_VERSION_DIR = re.compile(r"^v(\d+)$")
_MANIFEST = re.compile(r"^v(\d+)\.json$")


@dataclass
class GcReport:
    """What garbage collection removed (or would remove, in a dry run) and its size."""

    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    dry_run: bool = False
    # Index rows the record cache keeps; None when it was left alone (see cache_note).
    cache_rows_kept: int | None = None
    cache_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": self.removed,
            "freed_bytes": self.freed_bytes,
            "dry_run": self.dry_run,
            "cache_rows_kept": self.cache_rows_kept,
            "cache_note": self.cache_note,
        }


def _size(fs: StoreFS, path: str) -> int:
    # Anything may vanish while it is measured (a run removing its own staging): it counts 0.
    return sum(e.size for e in fs.files(path))


def _newest_mtime(fs: StoreFS, path: str) -> float | None:
    """Return the newest mtime of `path` and everything under it; None once it is gone."""
    try:
        newest = fs.mtime(path)
    except FileNotFoundError:
        return None
    return max([newest, *(e.mtime for e in fs.files(path))])


def _old_enough(fs: StoreFS, path: str, min_age_s: float, now: float) -> bool:
    if min_age_s <= 0:
        return fs.exists(path)
    newest = _newest_mtime(fs, path)
    return newest is not None and now - newest >= min_age_s


def _committed_manifests(store: Store) -> list[Manifest]:
    manifests = []
    for version in store.versions():
        try:
            manifests.append(store.manifest(version))
        except VersionNotFound:  # removed between listing and reading
            continue
    return manifests


def unreferenced_paths(store: Store) -> list[str]:
    """Return every path under the dataset's staging, versions, quarantine and lock folders
    that neither a committed manifest nor a live run references (trained models and other
    folders are left alone). Call it under the commit lock, as `collect_garbage` does."""
    fs = store.fs
    staging = os.path.join(store.root, "_staging")
    garbage = [os.path.join(staging, n) for n in fs.listdir(staging) if not run_is_live(store, n)]
    version_names = fs.listdir(store.versions_dir)
    quarantine_dir = os.path.join(store.root, "quarantine")
    quarantine_names = fs.listdir(quarantine_dir)
    # Manifests are read after the folders are listed: a version committed in between
    # (by a committer that took no lock) is then known, never mistaken for garbage.
    manifests = _committed_manifests(store)
    committed = {m.number: m for m in manifests}
    for name in version_names:
        path = os.path.join(store.versions_dir, name)
        if _MANIFEST.match(name):
            continue
        match = _VERSION_DIR.match(name)
        if match and int(match.group(1)) in committed:
            manifest = committed[int(match.group(1))]
            wanted = {e.path for e in manifest.shards} | {e.path for e in manifest.cards}
            # Row-digest sidecars live in a subfolder: keep its top-level name.
            wanted |= {e.row_digests.split("/")[0] for e in manifest.shards if e.row_digests}
            garbage.extend(os.path.join(path, f) for f in fs.listdir(path) if f not in wanted)
        else:
            garbage.append(path)  # an uncommitted version folder or a temp file
    quarantined = {os.path.basename(m.quarantine.path or "") for m in manifests}
    garbage.extend(
        os.path.join(quarantine_dir, f)
        for f in quarantine_names
        if f not in quarantined and not run_is_live(store, f.removesuffix(".jsonl"))
    )
    # Lease files of dead runs, when they live in the store (on an object store they are on
    # this machine, and each run removes its own).
    if fs.is_local:
        for name in fs.listdir(locks_dir(store)):
            lease = LEASE_FILE.match(name)
            if lease and not run_is_live(store, lease.group(1)):
                garbage.append(os.path.join(locks_dir(store), name))
    return sorted(garbage)


def collect_garbage(
    store: Store,
    fs: StoreFS | None = None,
    dry_run: bool = False,
    min_age_s: float = DEFAULT_MIN_AGE_S,
    cache_versions: int = DEFAULT_CACHE_VERSIONS,
    also: Callable[[], list[str]] | None = None,
) -> GcReport:
    """Remove what no manifest and no live run references, and prune the record cache to
    what the newest `cache_versions` versions were made of (0: empty it); return what went.
    `min_age_s` also spares paths with anything modified more recently than that. `fs`
    defaults to the store's own filesystem. `also` lists more paths to remove under the
    same lock and age rule (the CLI's: model folders, from trainers.model_gc)."""
    fs = fs if fs is not None else store.fs
    report = GcReport(dry_run=dry_run)
    if not fs.exists(store.root):
        return report
    with commit_lock(store):
        now = time.time()
        for path in unreferenced_paths(store) + (also() if also else []):
            if _old_enough(fs, path, min_age_s, now):
                _remove(store, fs, report, path)
        _prune_cache(store, fs, report, cache_versions, min_age_s, now)
    return report


def _remove(store: Store, fs: StoreFS, report: GcReport, path: str) -> None:
    """Remove `path` (unless a dry run) and count it in `report`."""
    size = _size(fs, path)
    if not report.dry_run:
        try:
            fs.remove_tree(path)
        except FileNotFoundError:  # its run removed it first
            return
    report.freed_bytes += size
    report.removed.append(os.path.relpath(path, store.root))


def _prune_cache(
    store: Store,
    fs: StoreFS,
    report: GcReport,
    cache_versions: int,
    min_age_s: float,
    now: float,
) -> None:
    cache = RecordCache(store.root, fs)
    if not fs.exists(cache.folder):
        return
    live = live_runs(store)
    if live:
        # A live run may be reading the index or about to point a shard at a part.
        report.cache_note = f"left alone: run {live[0]} is live"
        return
    manifests = _committed_manifests(store)
    kept = manifests[-cache_versions:] if cache_versions > 0 else []
    pruned = cache.prune(_made_ids(store, kept), min_age_s, now, report.dry_run)
    report.cache_rows_kept = pruned.kept_rows
    for path in pruned.removable:  # in its order: replaced index files, then parts
        _remove(store, fs, report, path)
    versions = ", ".join(f"v{m.number}" for m in kept) or "no version"
    report.cache_note = f"kept what {versions} was made of"


def _made_ids(store: Store, manifests: list[Manifest]) -> pa.Array:
    """Return the ids of the rows of `manifests`' shards and of the records their runs
    quarantined: what the record cache holds for them."""
    ids: list[str] = []
    for manifest in manifests:
        for path in store.shard_paths(manifest):
            for batch in read_shard_batches(path, ["id"], fs=store.fs):
                ids.extend(batch.column("id").to_pylist())
        if manifest.quarantine.path:
            quarantine = os.path.join(store.root, manifest.quarantine.path)
            if store.fs.exists(quarantine):
                for line in store.fs.read_bytes(quarantine).splitlines():
                    if line.strip():
                        ids.append(json.loads(line).get("record_id"))
    return pa.array(sorted({i for i in ids if i}), pa.string())
