"""The dataset store: where versions live and how a committed version is read back.

Layout (docs/ARCHITECTURE.md, "Store layout"): <store>/<name>/versions/v<N>/ holds shards and cards,
<store>/<name>/versions/v<N>.json is the manifest, whose exclusive creation is the commit.
Readers trust only manifests: a v<N>/ folder without its manifest does not exist.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.record.ids import DATASET_NAME_PATTERN
from pipeline.store.fs import StoreFS
from pipeline.store.manifest import Manifest
from pipeline.store.store_fs import store_fs

_VERSION_FILE = re.compile(r"^v(\d+)\.json$")
_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*?)(?:@v?(?P<version>\d+))?$")
_NAME = re.compile(DATASET_NAME_PATTERN)
# (dataset folder, version, manifest digest, shards hashed) of versions this process has
# already proved intact: a reader checks a version once, not on every open.
_CHECKED: set[tuple[str, int, str | None, bool]] = set()


class VersionNotFound(LookupError):
    """The asked-for dataset or version has no committed manifest."""


class VersionCorrupt(VersionNotFound):
    """The version's files or manifest differ from what was committed; nothing reads it.

    A kind of VersionNotFound on purpose: every command that refuses a missing version
    with one line refuses a corrupt one the same way.
    """


def check_dataset_name(name: str) -> str:
    """Return `name` when it is a path-safe dataset name; raise ValueError otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"dataset name {name!r} is not allowed: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Return (name, version) from 'name' or 'name@vN'; version None means the latest."""
    m = _REF.match(ref.strip())
    if not m:
        raise ValueError(f"not a dataset reference: {ref!r} (use NAME or NAME@vN)")
    version = m.group("version")
    return m.group("name"), int(version) if version is not None else None


@dataclass(frozen=True)
class Store:
    """One dataset's folder in a store: paths, committed versions and their manifests.

    `Store(uri, name)` resolves the filesystem from the URI (a local path, `file://`, or
    `s3://bucket/prefix`); `Store(path, name, fs)` takes a path on a filesystem already
    made (what `store_fs` returned). Every path it hands out is a path on `fs`.
    """

    uri: str
    name: str
    fs: StoreFS = field(default=None, compare=False, repr=False)  # type: ignore[assignment]
    path: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_dataset_name(self.name)
        if self.fs is None:
            fs, path = store_fs(self.uri)
            object.__setattr__(self, "fs", fs)
        else:
            path = self.uri.split("://", 1)[1].strip("/") if "://" in self.uri else self.uri
        object.__setattr__(self, "path", path)

    @property
    def location(self) -> str:
        """Return the store as a user names it (`s3://bucket/prefix` or a local path)."""
        return self.fs.uri(self.path)

    @property
    def root(self) -> str:
        return os.path.join(self.path, self.name)

    @property
    def versions_dir(self) -> str:
        return os.path.join(self.root, "versions")

    def staging_dir(self, run_id: str) -> str:
        return os.path.join(self.root, "_staging", run_id)

    def pins_path(self) -> str:
        """Return the dataset's pin cache: its input files' sha256 by their stat, under the
        record cache's folder (pipeline/store/cache.py; provenance.PinCache)."""
        return os.path.join(self.root, "cache", "pins.json")

    def quarantine_path(self, run_id: str) -> str:
        return os.path.join(self.root, "quarantine", f"{run_id}.jsonl")

    def models_dir(self, run_id: str) -> str:
        return os.path.join(self.root, "models", run_id)

    def version_dir(self, version: int) -> str:
        return os.path.join(self.versions_dir, f"v{version}")

    def manifest_path(self, version: int) -> str:
        return os.path.join(self.versions_dir, f"v{version}.json")

    def versions(self) -> list[int]:
        """Return the committed version numbers, ascending."""
        names = self.fs.listdir(self.versions_dir)
        return sorted(int(m.group(1)) for n in names if (m := _VERSION_FILE.match(n)))

    def latest(self) -> int | None:
        """Return the newest committed version number, or None when there is none."""
        versions = self.versions()
        return versions[-1] if versions else None

    def latest_manifest(self) -> Manifest | None:
        """Return the latest version's manifest, None when none is committed."""
        try:
            return self.manifest()
        except VersionNotFound:
            return None

    def manifest(self, version: int | None = None) -> Manifest:
        """Return the manifest of `version` (the latest when None)."""
        if version is None:
            version = self.latest()
            if version is None:
                raise VersionNotFound(
                    f"dataset {self.name!r} has no committed version in {self.location}"
                )
        try:
            return Manifest.read(self.manifest_path(version), self.fs)
        except FileNotFoundError:
            raise VersionNotFound(
                f"{self.name}@v{version} is not committed in {self.location}"
            ) from None

    def checked_manifest(self, version: int | None = None, hash_shards: bool = True) -> Manifest:
        """Return the manifest of `version` (latest when None) once its files are proved as
        committed: the manifest's digest, every file's size, and (with `hash_shards`) every
        shard's sha256. Raise VersionCorrupt with one line otherwise. Checked once per
        version per process."""
        manifest = self.manifest(version)
        number = manifest.number
        key = (self.fs.uri(self.root), number, manifest.manifest_sha256, hash_shards)
        if key in _CHECKED:
            return manifest
        # Here, not at the top: verify reads Arrow, and opening a store (an unchanged
        # rerun's manifest) must not import it.
        from pipeline.store.verify import verify_version

        # Matching file hashes already prove every row as written: no row is rehashed here.
        report = verify_version(
            self, number, hash_files=hash_shards, manifest=manifest, check_rows=False
        )
        if not report.ok:
            raise VersionCorrupt(report.summary())
        _CHECKED.add(key)
        return manifest

    def shard_paths(self, manifest: Manifest, split: str | None = None) -> list[str]:
        """Return absolute shard paths of a manifest, in manifest order, optionally one split."""
        vdir = self.version_dir(manifest.number)
        return [os.path.join(vdir, s.path) for s in manifest.shards_of(split)]


def _read_ipc_shards(paths: Any, fs: StoreFS) -> Any:
    import pyarrow as pa

    from pipeline.store.shards import read_shard_batches

    for path in paths["path"].to_pylist():
        for batch in read_shard_batches(path, fs=fs):
            yield pa.Table.from_batches([batch])


def ray_dataset(store: Store, version: int | None = None, split: str | None = None) -> Any:
    """Return a lazy `ray.data.Dataset` over a committed version's shards (one split or all)."""
    import ray.data

    manifest = store.checked_manifest(version)
    paths = store.shard_paths(manifest, split)
    if paths and paths[0].endswith(".parquet"):
        return ray.data.read_parquet(paths, filesystem=store.fs.arrow)
    # Ray Data has no Arrow IPC reader: each read task opens one shard (memory-mapped
    # locally) and streams its record batches.
    items = ray.data.from_items(
        [{"path": p} for p in paths], override_num_blocks=max(1, len(paths))
    )
    return items.map_batches(
        _read_ipc_shards, batch_size=1, batch_format="pyarrow", fn_kwargs={"fs": store.fs}
    )
