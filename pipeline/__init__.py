"""roleforge's data side: recipes, readers, stages, execution, the store and cards.

The public names are imported on first use, so `roleforge --help` stays instant:

    from pipeline import load_recipe, run_recipe, Store
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
