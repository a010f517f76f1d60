"""The role-play fine-tuning stage: a committed dataset version in, a model folder out.

Names are imported on first use, so `import trainers.config` (which the recipe needs)
does not pull in torch or transformers.
"""

from __future__ import annotations

from pipeline.record.lazy import lazy_exports

_EXPORTS = {
    "ModalityMismatch": "trainers.models",
    "UnsupportedModel": "trainers.models",
    "NothingToResume": "trainers.run",
    "TrainResult": "trainers.run",
    "load_trained": "trainers.run",
    "train_version": "trainers.run",
    "TRAIN_SETUP_ERRORS": "trainers.setup_errors",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("trainers", _EXPORTS)
