"""Checking a committed version against its manifest: every shard, sidecar and card
re-hashed, every row's digest recomputed, and the manifest itself against the digest
recorded in it at commit. A format 1 manifest (no sidecars) keeps its own content id rule."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline.store.fs import StoreFS
from pipeline.store.manifest import (
    MANIFEST_FORMAT_V1,
    Manifest,
    ShardEntry,
    content_id,
    manifest_digest,
    shard_content_id,
)
from pipeline.store.row_digest import read_row_digests, shard_row_digests

if TYPE_CHECKING:  # read.py calls verify_version: the class is needed for its hint only
    from pipeline.store.read import Store


@dataclass(frozen=True)
class VerifyProblem:
    """One file that does not match its manifest entry."""

    path: str  # a row: "<shard path>#<record id>"
    problem: str  # missing | size | sha256 | unreadable | row | row_digests | content_id | manifest
    expected: Any
    actual: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "problem": self.problem,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass
class VerifyReport:
    """The outcome of re-hashing one version: files checked and every mismatch."""

    name: str
    version: int
    path: str
    checked: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """Return one line naming the version and its first problems."""
        shown = "; ".join(f"{p.path}: {p.problem}" for p in self.problems[:3])
        more = f" and {len(self.problems) - 3} more" if len(self.problems) > 3 else ""
        return (
            f"{self.name}@v{self.version} is corrupt ({shown}{more}); "
            f"run `roleforge verify {self.name}@v{self.version}` for details"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": self.path,
            "ok": self.ok,
            "checked": self.checked,
            "problems": [p.to_dict() for p in self.problems],
        }


def _check_file(
    report: VerifyReport, fs: StoreFS, vdir: str, entry: dict[str, Any], hash_file: bool = True
) -> str | None:
    path = os.path.join(vdir, entry["path"])
    report.checked += 1
    if not fs.is_file(path):
        report.problems.append(VerifyProblem(entry["path"], "missing", "file", None))
        return None
    if "bytes" in entry:
        size = fs.size(path)
        if size != entry["bytes"]:
            # A truncated or extended shard: report the size, and skip hashing it.
            report.problems.append(VerifyProblem(entry["path"], "size", entry["bytes"], size))
            return None
    if not hash_file:
        return None
    digest = fs.sha256(path)
    if digest != entry["sha256"]:
        report.problems.append(VerifyProblem(entry["path"], "sha256", entry["sha256"], digest))
    return digest


def _check_rows(
    report: VerifyReport,
    fs: StoreFS,
    vdir: str,
    shard: ShardEntry,
    recorded: pa.Table,
    size_reported: bool = False,
) -> None:
    """Recompute the digest of every row of `shard` and report each that differs from the
    sidecar's (a row changed, added or removed), naming its record id."""
    try:
        actual = shard_row_digests(os.path.join(vdir, shard.path), fs)
    except (pa.ArrowException, OSError) as exc:  # a shard cut short or overwritten
        if not size_reported:
            report.problems.append(VerifyProblem(shard.path, "unreadable", "rows", str(exc)))
        return
    expected, found = _by_id(recorded), _by_id(actual)
    for record_id in sorted(expected.keys() | found.keys()):
        want, got = expected.get(record_id), found.get(record_id)
        if want != got:
            report.problems.append(VerifyProblem(f"{shard.path}#{record_id}", "row", want, got))


def _by_id(rows: pa.Table) -> dict[str, str]:
    return dict(zip(rows["id"].to_pylist(), rows["row_sha256"].to_pylist(), strict=True))


def _check_content_id(
    report: VerifyReport, store: Store, vdir: str, manifest: Manifest, check_rows: bool
) -> None:
    """Recompute the content id by the manifest's format's rule; in format 2, from the
    sidecars (checked against their sha256 first) and, with `check_rows`, every row."""
    manifest_file = os.path.basename(store.manifest_path(manifest.number))
    if manifest.format == MANIFEST_FORMAT_V1:
        expected = shard_content_id(manifest.schema_sha256, [s.sha256 for s in manifest.shards])
    else:
        tables = []
        for shard in manifest.shards:
            if shard.row_digests is None or shard.row_digests_sha256 is None:
                report.problems.append(VerifyProblem(shard.path, "row_digests", "sidecar", None))
                return
            entry = {"path": shard.row_digests, "sha256": shard.row_digests_sha256}
            if _check_file(report, store.fs, vdir, entry) != shard.row_digests_sha256:
                return
            recorded = read_row_digests(os.path.join(vdir, shard.row_digests), store.fs)
            known = {p.problem for p in report.problems if p.path == shard.path}
            if check_rows and "missing" not in known:
                # A shard of another size may still hold whole rows (one edited): name
                # them; one cut short is reported by its size alone.
                _check_rows(report, store.fs, vdir, shard, recorded, "size" in known)
            tables.append(recorded)
        expected = content_id(manifest.schema_sha256, tables)
    if expected != manifest.content_id:
        report.problems.append(
            VerifyProblem(manifest_file, "content_id", expected, manifest.content_id)
        )


def verify_version(
    store: Store,
    version: int | None = None,
    hash_files: bool = True,
    manifest: Manifest | None = None,
    check_rows: bool = True,
) -> VerifyReport:
    """Return the result of checking a version (latest if None) against its manifest: the
    manifest's own digest and every shard's and card's size. With `hash_files`, also every
    file's sha256 and the content id recomputed (format 2: from the row-digest sidecars,
    and with `check_rows` every row's digest recomputed from the shards, so a changed row
    is named by its id; format 1: from the shard hashes)."""
    manifest = manifest if manifest is not None else store.manifest(version)
    number = manifest.number
    vdir = store.version_dir(number)
    report = VerifyReport(store.name, number, vdir)
    manifest_file = os.path.basename(store.manifest_path(number))
    if not manifest.digest_matches():
        # A missing digest counts too: without it an edit to counts, splits or the recipe
        # (or a stripped digest) goes unseen. Manifests from before digests fail here.
        actual = manifest_digest(manifest.to_dict())
        report.problems.append(
            VerifyProblem(manifest_file, "manifest", manifest.manifest_sha256, actual)
        )
    for shard in manifest.shards:
        _check_file(report, store.fs, vdir, shard.model_dump(), hash_files)
    for card in manifest.cards:
        _check_file(report, store.fs, vdir, card.model_dump(), hash_files)
    if hash_files or manifest.format == MANIFEST_FORMAT_V1:  # format 1's rule reads no file
        _check_content_id(report, store, vdir, manifest, check_rows)
    return report
