"""Removing what no manifest references: staging folders, uncommitted version folders,
stray files inside versions, and quarantine files of runs that published nothing."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.store.fs import LocalFS
from pipeline.store.read import Store, VersionNotFound

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
    if os.path.isfile(path) or os.path.islink(path):
        return os.lstat(path).st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
    return total


def _old_enough(path: str, min_age_s: float, now: float) -> bool:
    return now - os.lstat(path).st_mtime >= min_age_s


def unreferenced_paths(store: Store) -> list[str]:
    """Return every path under the dataset's staging, versions and quarantine folders that
    no committed manifest references (trained models and other folders are left alone)."""
    manifests = []
    for version in store.versions():
        try:
            manifests.append(store.manifest(version))
        except VersionNotFound:  # removed between listing and reading
            continue
    garbage = [
        os.path.join(store.root, "_staging", n)
        for n in _listdir(os.path.join(store.root, "_staging"))
    ]
    committed = {m.number: m for m in manifests}
    for name in _listdir(store.versions_dir):
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
    quarantine_dir = os.path.join(store.root, "quarantine")
    garbage.extend(
        os.path.join(quarantine_dir, f) for f in _listdir(quarantine_dir) if f not in quarantined
    )
    return sorted(garbage)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def collect_garbage(
    store: Store, fs: LocalFS, dry_run: bool = False, min_age_s: float = 0.0
) -> GcReport:
    """Remove what no manifest references; return what went. `min_age_s` spares paths
    modified more recently, e.g. the staging folder of a run still in progress."""
    report = GcReport(dry_run=dry_run)
    now = time.time()
    for path in unreferenced_paths(store):
        if not _old_enough(path, min_age_s, now):
            continue
        report.freed_bytes += _size(path)
        report.removed.append(os.path.relpath(path, store.root))
        if not dry_run:
            fs.remove_tree(path)
    return report
