"""The quality layer: role-play lint, near-duplicates, token ledger and decontamination.

Every check is a Stage (`process(batch, ctx) -> StageOutput`); `quality_stages` returns
the list a recipe's `quality:` section asks for, in the order they run. The names are
imported on first use: the recipe imports `quality.config` and must stay light.
"""

from __future__ import annotations

from pipeline.record.lazy import lazy_exports

_EXPORTS = {
    "QualityConfig": "pipeline.stages.quality.config",
    "quality_stages": "pipeline.stages.quality.stages",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("pipeline.stages.quality", _EXPORTS)
