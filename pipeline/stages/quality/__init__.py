"""The quality layer: role-play lint, near-duplicates, token ledger and decontamination.

Every check is a Stage (`process(batch, ctx) -> StageOutput`); `quality_stages` returns
the list a recipe's `quality:` section asks for, in the order they run. Near-duplicates
take two steps outside the stages: `near_dup_signatures` in the tasks that read records,
`plan_near_duplicates` on the driver over all their rows. The names are
imported on first use: the recipe imports `quality.config` and must stay light.
"""

from __future__ import annotations

from pipeline.record.lazy import lazy_exports

_EXPORTS = {
    "QualityConfig": "pipeline.stages.quality.config",
    "quality_stages": "pipeline.stages.quality.stages",
    "token_ledger_stage": "pipeline.stages.quality.stages",
    "near_dup_signatures": "pipeline.stages.quality.signatures",
    "SIGNATURE_SCHEMA": "pipeline.stages.quality.signatures",
    "plan_near_duplicates": "pipeline.stages.quality.planner",
    "NearDupPlan": "pipeline.stages.quality.planner",
    "quality_key_part": "pipeline.stages.quality.cache_key",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("pipeline.stages.quality", _EXPORTS)
