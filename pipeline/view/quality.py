"""What a version's `quality` column says, summed over the whole version one batch at a time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.view.rows import VersionRows

QUALITY_FIELDS = ("flags", "near_dup_cluster", "tokens", "language")
HISTOGRAM_BINS = 12
CLUSTERS_SHOWN = 12
MEMBERS_SHOWN = 4


@dataclass(frozen=True)
class HistogramBin:
    low: float
    high: float
    count: int


@dataclass
class QualitySummary:
    """Counts per flag and language, near-duplicate clusters, token-length histograms;
    `missing` says what the version lacks when it has no (or a partial) quality column."""

    missing: list[str] = field(default_factory=list)
    rows: int = 0
    flags: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    clusters: dict[str, list[str]] = field(default_factory=dict)  # cluster -> record ids
    cluster_count: int = 0
    histograms: dict[str, list[HistogramBin]] = field(default_factory=dict)


def summarize_quality(rows: VersionRows) -> QualitySummary:
    """Return the quality summary of a version (read from its `quality` column only)."""
    if not rows.has_quality:
        return QualitySummary(missing=["quality"])
    quality_type = rows.schema.field("quality").type
    present = {quality_type.field(i).name for i in range(quality_type.num_fields)}
    summary = QualitySummary(missing=[f"quality.{f}" for f in QUALITY_FIELDS if f not in present])
    members: dict[str, list[str]] = {}
    tokens: dict[str, list[np.ndarray]] = {}
    for batch in rows.scan(["id", "quality"]):
        quality = batch["quality"]
        summary.rows += len(quality)
        if "flags" in present:
            flags = pc.list_flatten(pc.struct_field(quality, "flags"))
            summary.flags.update(f for f in flags.to_pylist() if f)
        if "language" in present:
            summary.languages.update(
                str(v) for v in pc.struct_field(quality, "language").to_pylist() if v
            )
        if "near_dup_cluster" in present:
            clusters = pc.struct_field(quality, "near_dup_cluster")
            valid = pc.is_valid(clusters)
            for record_id, cluster in zip(
                pc.filter(batch["id"], valid).to_pylist(),
                pc.filter(clusters, valid).to_pylist(),
                strict=True,
            ):
                members.setdefault(str(cluster), []).append(record_id)
        if "tokens" in present:
            for name, values in _token_columns(pc.struct_field(quality, "tokens")):
                tokens.setdefault(name, []).append(values)
    groups = {c: ids for c, ids in members.items() if len(ids) > 1}
    summary.cluster_count = len(groups)
    biggest = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:CLUSTERS_SHOWN]
    summary.clusters = {c: sorted(ids)[:MEMBERS_SHOWN] for c, ids in biggest}
    summary.histograms = {
        name: histogram(np.concatenate(parts)) for name, parts in sorted(tokens.items())
    }
    return summary


def _token_columns(tokens: pa.Array) -> list[tuple[str, np.ndarray]]:
    """Return (name, counts) of a `tokens` field: an integer, or a struct of integers
    (one histogram per field, e.g. per role)."""
    if pa.types.is_struct(tokens.type):
        return [
            (f"tokens.{tokens.type.field(i).name}", _numbers(pc.struct_field(tokens, i)))
            for i in range(tokens.type.num_fields)
            if pa.types.is_integer(tokens.type.field(i).type)
        ]
    if pa.types.is_integer(tokens.type) or pa.types.is_floating(tokens.type):
        return [("tokens", _numbers(tokens))]
    return []


def _numbers(values: pa.Array) -> np.ndarray:
    return pc.drop_null(values).to_numpy(zero_copy_only=False).astype(float)


def histogram(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> list[HistogramBin]:
    """Return at most `bins` equal-width bins over `values`; counts of tokens get whole-number
    bins, each from `low` to `high` inclusive."""
    if values.size == 0:
        return []
    low, high = float(values.min()), float(values.max())
    if np.all(values == np.round(values)):
        width = max(1, -(-(int(high) - int(low) + 1) // bins))
        edges = np.arange(int(low), int(high) + width + 1, width)
        counts, _ = np.histogram(values, bins=edges)
        return [
            HistogramBin(float(edges[i]), float(edges[i + 1] - 1), int(c))
            for i, c in enumerate(counts)
        ]
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return [
        HistogramBin(float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts)
    ]
