"""Provenance of a run, for its manifest: input files with hashes, code and library
versions, and what each configured augmentation op did."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from typing import Any

from pipeline.recipe import Recipe
from pipeline.store.manifest import AugmentationSummary, AugmentOp, CodeVersion, InputFile

LIBRARIES = ("pyarrow", "ray", "albumentations", "audiomentations", "nlpaug")


def code_version() -> CodeVersion:
    """Return the package version, git commit (when run from a checkout) and library versions."""

    def version_of(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    commit = None
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        done = subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if done.returncode == 0:
            commit = done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return CodeVersion(
        roleforge=version_of("roleforge"),
        git_commit=commit,
        libraries={name: version_of(name) for name in LIBRARIES},
    )


def input_entries(recipe: Recipe) -> list[InputFile]:
    """Return every source's input files with their sha256 and size, paths relative to the
    recipe's folder."""
    from pipeline.readers import source_input_files
    from pipeline.record.ids import file_sha256

    entries = []
    for source in recipe.sources:
        for path in source_input_files(source, recipe):
            entries.append(
                InputFile(
                    source=source.name,
                    path=os.path.relpath(path, recipe.base_dir),
                    sha256=file_sha256(path),
                    bytes=os.path.getsize(path),
                )
            )
    return entries


def augmentation_summary(recipe: Recipe, stats: dict[str, Any]) -> AugmentationSummary:
    """Return the manifest's augmentation block: each configured op with its counts."""
    ops = []
    per_op = stats.get("ops") or {}
    for modality in ("text", "image", "audio", "dialogue"):
        for spec in getattr(recipe.augment, modality):
            counted = per_op.get(f"{modality}:{spec['op']}", {})
            ops.append(
                AugmentOp(
                    modality=modality,
                    op=spec["op"],
                    configured=spec,
                    applied=counted.get("applied", 0),
                    skipped=counted.get("skipped", 0),
                )
            )
    return AugmentationSummary(copies=recipe.augment.copies, ops=ops, stats=stats)
