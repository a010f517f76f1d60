"""What of the quality layer enters a record's cache key (<store>/<name>/cache/).

A record's quality output depends on more than its own content: the `quality:` settings,
the held-out files' bytes, the processor the tokens are counted with, and what the
near-duplicate plan says about this record (its cluster, its kept id, its partners, its
greeting count), which other records decide. All of it goes into the key, so a rerun
reuses a record exactly when its quality output cannot have changed.

By default (`group_media` off) the plan the key reads holds text pairs only: image and
audio pairs are planned after the record pass (pipeline/execution/media_pairs.py) and
added to the rows by the shard writer, not by the pass, so they do not change what the
cache keeps of a record; the cache remembers the flags a row's digest was taken with
instead (`CACHE_INDEX_SCHEMA.media_flags`). With `group_media` media pairs join clusters
and the pass flags them: they are in the plan, and so in the key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline.record.ids import canonical_json
from pipeline.stages.quality.config import QualityConfig
from pipeline.stages.quality.planner import NearDupPlan


def plan_entry(plan: NearDupPlan | None, record_id: str) -> dict[str, Any] | None:
    """Return what `plan` says about one record (None when it says nothing)."""
    if plan is None:
        return None
    pairs = plan.pairs.filter(_touches(plan, record_id)).to_pylist()
    entry = {
        "cluster": plan.clusters.get(record_id),
        "kept": plan.drop.get(record_id),
        "pairs": [[p["a"], p["b"], p["modality"], round(p["similarity"], 6)] for p in pairs],
        "greeting": plan.greetings.get(record_id),
    }
    return entry if any(entry.values()) else None


def _touches(plan: NearDupPlan, record_id: str) -> Any:
    import pyarrow.compute as pc

    return pc.or_(pc.equal(plan.pairs["a"], record_id), pc.equal(plan.pairs["b"], record_id))


def quality_key_part(
    config: QualityConfig | None,
    record_id: str,
    plan: NearDupPlan | None = None,
    held_out_sha256: list[str] | None = None,
    processor_hash: str | None = None,
) -> str | None:
    """Return the digest to add to a record's cache key (None when quality is off)."""
    if config is None:
        return None
    payload = {
        "config": config.model_dump(mode="json"),
        "held_out": sorted(held_out_sha256 or []),
        "processor": processor_hash,
        "near_dup": plan_entry(plan, record_id),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
