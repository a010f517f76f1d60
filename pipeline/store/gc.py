"""Removing what no manifest references: staging folders, uncommitted version folders,
stray files inside versions, and quarantine files of runs that published nothing.

Never what is in use: gc holds the commit lock while it lists and removes (so no version
is half-made meanwhile), spares the staging folder and quarantine file of every run whose
lease is held (pipeline/store/lock.py), and by default spares anything changed in the last
hour as well, for runs started by an older roleforge that took no lease.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.store.fs import LocalFS
from pipeline.store.lock import commit_lock, locks_dir, run_is_live
from pipeline.store.manifest import Manifest
from pipeline.store.read import Store, VersionNotFound

DEFAULT_MIN_AGE_S = 3600.0
_LEASE = re.compile(r"^run-(.+)\.lock$")

_VERSION_DIR = re.compile(r"^v(\d+)$")
_MANIFEST = re.compile(r"^v(\d+)\.json$")


@dataclass
class GcReport:
    """What garbage collection removed (or would remove, in a dry run) and its size."""

    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "freed_bytes": self.freed_bytes, "dry_run": self.dry_run}


def _size(path: str) -> int:
    # Anything may vanish while it is measured (a run removing its own staging): it counts 0.
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            return os.lstat(path).st_size
    except FileNotFoundError:
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                continue
    return total


def _newest_mtime(path: str) -> float | None:
    """Return the newest mtime of `path` and everything under it; None once it is gone."""
    try:
        newest = os.lstat(path).st_mtime
    except FileNotFoundError:
        return None
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
                except FileNotFoundError:
                    continue
    return newest


def _old_enough(path: str, min_age_s: float, now: float) -> bool:
    if min_age_s <= 0:
        return os.path.lexists(path)
    newest = _newest_mtime(path)
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
    staging = os.path.join(store.root, "_staging")
    garbage = [
        os.path.join(staging, n) for n in _listdir(staging) if not run_is_live(store.root, n)
    ]
    version_names = _listdir(store.versions_dir)
    quarantine_dir = os.path.join(store.root, "quarantine")
    quarantine_names = _listdir(quarantine_dir)
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
            garbage.extend(os.path.join(path, f) for f in _listdir(path) if f not in wanted)
        else:
            garbage.append(path)  # an uncommitted version folder or a temp file
    quarantined = {os.path.basename(m.quarantine.path or "") for m in manifests}
    garbage.extend(
        os.path.join(quarantine_dir, f)
        for f in quarantine_names
        if f not in quarantined and not run_is_live(store.root, f.removesuffix(".jsonl"))
    )
    for name in _listdir(locks_dir(store.root)):
        lease = _LEASE.match(name)
        if lease and not run_is_live(store.root, lease.group(1)):
            garbage.append(os.path.join(locks_dir(store.root), name))
    return sorted(garbage)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def collect_garbage(
    store: Store, fs: LocalFS, dry_run: bool = False, min_age_s: float = DEFAULT_MIN_AGE_S
) -> GcReport:
    """Remove what no manifest and no live run references; return what went. `min_age_s`
    also spares paths with anything modified more recently than that."""
    report = GcReport(dry_run=dry_run)
    if not os.path.isdir(store.root):
        return report
    with commit_lock(store.root):
        now = time.time()
        for path in unreferenced_paths(store):
            if not _old_enough(path, min_age_s, now):
                continue
            size = _size(path)
            if not dry_run:
                try:
                    fs.remove_tree(path)
                except FileNotFoundError:  # its run removed it first
                    continue
            report.freed_bytes += size
            report.removed.append(os.path.relpath(path, store.root))
    return report
