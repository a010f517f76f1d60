"""Checking a committed version against its manifest: every shard and card re-hashed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pipeline.record.ids import file_sha256
from pipeline.store.commit import content_id
from pipeline.store.read import Store


@dataclass(frozen=True)
class VerifyProblem:
    """One file that does not match its manifest entry."""

    path: str
    problem: str  # missing | size | sha256 | content_id
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": self.path,
            "ok": self.ok,
            "checked": self.checked,
            "problems": [p.to_dict() for p in self.problems],
        }


def _check_file(report: VerifyReport, vdir: str, entry: dict[str, Any]) -> str | None:
    path = os.path.join(vdir, entry["path"])
    report.checked += 1
    if not os.path.isfile(path):
        report.problems.append(VerifyProblem(entry["path"], "missing", "file", None))
        return None
    if "bytes" in entry:
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            # A truncated or extended shard: report the size, and skip hashing it.
            report.problems.append(VerifyProblem(entry["path"], "size", entry["bytes"], size))
            return None
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        report.problems.append(VerifyProblem(entry["path"], "sha256", entry["sha256"], digest))
    return digest


def verify_version(store: Store, version: int | None = None) -> VerifyReport:
    """Return the result of re-hashing every shard and card of a version (latest if None)
    and recomputing its content id from the manifest."""
    manifest = store.manifest(version)
    number = manifest.number
    vdir = store.version_dir(number)
    report = VerifyReport(store.name, number, vdir)
    for shard in manifest.shards:
        _check_file(report, vdir, shard.model_dump())
    for card in manifest.cards:
        _check_file(report, vdir, card.model_dump())
    expected = content_id(manifest.schema_sha256, [s.sha256 for s in manifest.shards])
    if expected != manifest.content_id:
        report.problems.append(
            VerifyProblem(store.manifest_path(number), "content_id", expected, manifest.content_id)
        )
    return report
