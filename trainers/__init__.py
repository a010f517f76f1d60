"""The role-play fine-tuning stage: a committed dataset version in, a model folder out.

Names are imported on first use, so `import trainers.config` (which the recipe needs)
does not pull in torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModalityMismatch": "trainers.models",
    "UnsupportedModel": "trainers.models",
    "NothingToResume": "trainers.stage",
    "TrainResult": "trainers.stage",
    "load_trained": "trainers.stage",
    "train_version": "trainers.stage",
}

__all__ = sorted(_EXPORTS) + ["TRAIN_SETUP_ERRORS"]


def __getattr__(name: str) -> Any:
    if name == "TRAIN_SETUP_ERRORS":
        return _setup_errors()
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def _setup_errors() -> tuple[type[Exception], ...]:
    """Return the errors a run raises before training starts: one line for the user each."""
    from trainers.loop import TrainerArgumentsError
    from trainers.mixture import MixtureError
    from trainers.models import ModalityMismatch, QuantizationUnavailable, UnsupportedModel
    from trainers.stage import NothingToResume

    return (
        ModalityMismatch,
        UnsupportedModel,
        QuantizationUnavailable,
        TrainerArgumentsError,
        MixtureError,
        NothingToResume,
    )
