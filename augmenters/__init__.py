"""Per-modality augmenters (text, image, audio) and dialogue-level ones, behind one registry.

Names are imported on first use, so `import augmenters.config` (which the recipe needs)
does not pull in the op libraries.
"""

from __future__ import annotations

from pipeline.record.lazy import lazy_exports

_EXPORTS = {
    "AugmentStats": "augmenters.stats",
    "RecordAugmenter": "augmenters.record",
    "registered_names": "augmenters.registry",
    "validate_augment_config": "augmenters.registry",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("augmenters", _EXPORTS)
