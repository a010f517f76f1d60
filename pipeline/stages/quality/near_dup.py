"""The near-duplicate stage: applies the driver's NearDupPlan to a batch.

A clustered record gets its cluster id in `quality.near_dup_cluster` and the flag
`near_duplicate`; under `keep_one` the others of its cluster leave as `near_duplicate`
naming the kept id. A record that shares only an image or a clip with another (not grouped
unless `group_media`) is flagged `near_duplicate_image` / `near_duplicate_audio`; one whose
opening turn many records share is flagged `repeated_greeting`. Clips that have no audio
hash (shorter than 288 ms, or silent) are counted as `audio_without_hash`: they were not
compared.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record.rejection import quarantine_entry
from pipeline.stages.base import BatchContext, StageOutput
from pipeline.stages.quality.column import add_flags, set_fields
from pipeline.stages.quality.lint import record_for_quarantine
from pipeline.stages.quality.planner import NearDupPlan


class NearDupStage:
    """Marks, groups or drops the records the plan found near-copies of."""

    name = "quality.near_duplicate"

    def __init__(self, plan: NearDupPlan, group_media: bool = False):
        self.plan = plan
        self.grouped = {"text", "image", "audio"} if group_media else {"text"}
        self._partners: dict[str, list[tuple[str, str, float]]] = {}
        for a, b, m, s in zip(
            *(plan.pairs[c].to_pylist() for c in plan.pairs.column_names), strict=True
        ):
            self._partners.setdefault(a, []).append((b, m, s))
            self._partners.setdefault(b, []).append((a, m, s))

    def found(self, record_id: str) -> list[tuple[str, str]]:
        """Return the (code, note) flags the plan gives `record_id`."""
        found = []
        for other, modality, sim in sorted(self._partners.get(record_id, [])):
            code = "near_duplicate" if modality in self.grouped else f"near_duplicate_{modality}"
            found.append((code, f"{modality} {sim:.2f} with {other}"))
        shared = self.plan.greetings.get(record_id)
        if shared:
            found.append(("repeated_greeting", f"opening turn shared by {shared} records"))
        return found

    def counted(self, record_id: str) -> Counter[str]:
        """Return what the stage counts for `record_id`: each flag code it gets once, and
        its clips without an audio hash (the record cache's tallies count the same)."""
        stats = Counter({code for code, _ in self.found(record_id)})
        if record_id in self.plan.unhashed:
            stats["audio_without_hash"] = self.plan.unhashed[record_id]
        return stats

    def process(self, batch: pa.Table, ctx: BatchContext) -> StageOutput:
        stats: Counter[str] = Counter()
        ids = batch["id"].to_pylist()
        flags: dict[int, list[tuple[str, str]]] = {}
        clusters: dict[int, str] = {}
        for row, record_id in enumerate(ids):
            found = self.found(record_id)
            if record_id in self.plan.clusters:
                clusters[row] = self.plan.clusters[record_id]
            if found:
                flags[row] = found
            stats.update(self.counted(record_id))
        table = set_fields(add_flags(batch, flags), "near_dup_cluster", clusters)
        drop = [row for row, record_id in enumerate(ids) if record_id in self.plan.drop]
        if not drop:
            return StageOutput(table, stats=stats)
        rejects = [
            quarantine_entry(
                self.name,
                record_for_quarantine(batch, row),
                "near_duplicate",
                f"a near-copy of {self.plan.drop[ids[row]]}, which is kept",
            )
            for row in drop
        ]
        stats["quarantined"] = len(drop)
        ctx.forget({ids[row] for row in drop})
        keep = pc.invert(pc.is_in(table["id"], pa.array([ids[r] for r in drop], pa.string())))
        return StageOutput(table.filter(keep), rejects=rejects, stats=stats)


def media_flags(plan: NearDupPlan) -> dict[str, list[tuple[str, str]]]:
    """Return record id -> the (code, note) flags of its image and audio pairs in `plan`
    (pairs not grouped: `near_duplicate_image` / `near_duplicate_audio`), as
    `NearDupStage.found` gives them; what the shard writer adds to the rows when the
    driver planned media after the record pass (`pipeline.execution.media_pairs`)."""
    media = plan.pairs.filter(pc.is_in(plan.pairs["modality"], pa.array(["image", "audio"])))
    stage = NearDupStage(NearDupPlan(pairs=media))
    ids = set(media["a"].to_pylist()) | set(media["b"].to_pylist())
    return {record_id: stage.found(record_id) for record_id in sorted(ids)}


def flags_digest(found: list[tuple[str, str]]) -> str:
    """Return the sha256 of (code, note) flags a writer adds to a row (`media_flags`): a
    cached row digest holds only for the flags it was written with."""
    return hashlib.sha256(json.dumps([list(f) for f in found]).encode("utf-8")).hexdigest()
