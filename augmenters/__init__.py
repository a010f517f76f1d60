"""Per-modality augmenters (text, image, audio) and dialogue-level ones, behind one registry.

Names are imported on first use, so `import augmenters.config` (which the recipe needs)
does not pull in the op libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AugmentStats": "augmenters.stats",
    "RecordAugmenter": "augmenters.record",
    "registered_names": "augmenters.registry",
    "validate_augment_config": "augmenters.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'augmenters' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
