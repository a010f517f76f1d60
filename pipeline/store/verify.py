"""Checking a committed version against its manifest: every shard and card re-hashed, and
the manifest itself against the digest recorded in it at commit."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.store.fs import StoreFS
from pipeline.store.manifest import Manifest, content_id, manifest_digest

if TYPE_CHECKING:  # read.py calls verify_version: the class is needed for its hint only
    from pipeline.store.read import Store


@dataclass(frozen=True)
class VerifyProblem:
    """One file that does not match its manifest entry."""

    path: str
    problem: str  # missing | size | sha256 | content_id | manifest
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


def verify_version(
    store: Store,
    version: int | None = None,
    hash_files: bool = True,
    manifest: Manifest | None = None,
) -> VerifyReport:
    """Return the result of checking a version (latest if None) against its manifest: the
    manifest's own digest, every shard's and card's size and (with `hash_files`) sha256,
    and the content id recomputed from the shard hashes."""
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
    expected = content_id(manifest.schema_sha256, [s.sha256 for s in manifest.shards])
    if expected != manifest.content_id:
        report.problems.append(
            VerifyProblem(manifest_file, "content_id", expected, manifest.content_id)
        )
    return report
