"""roleforge's data side: recipes, readers, stages, execution, the store and cards.

The public names are imported on first use, so `roleforge --help` stays instant:

    from pipeline import load_recipe, run_recipe, Store
"""

from __future__ import annotations

from pipeline.record.lazy import lazy_exports

_EXPORTS = {
    "Recipe": "pipeline.recipe",
    "RecipeError": "pipeline.record.config",
    "load_recipe": "pipeline.recipe",
    "run_recipe": "pipeline.execution.job",
    "RunResult": "pipeline.execution.job",
    "Store": "pipeline.store.read",
    "VersionNotFound": "pipeline.store.read",
    "parse_ref": "pipeline.store.read",
    "ray_dataset": "pipeline.store.read",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("pipeline", _EXPORTS)
