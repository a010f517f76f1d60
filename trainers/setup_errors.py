"""The errors a run raises before training starts, each shown to the user as one line."""

from __future__ import annotations

from trainers.loop import TrainerArgumentsError
from trainers.mixture import MixtureError
from trainers.models import ModalityMismatch, QuantizationUnavailable, UnsupportedModel
from trainers.run import NothingToResume

TRAIN_SETUP_ERRORS: tuple[type[Exception], ...] = (
    ModalityMismatch,
    UnsupportedModel,
    QuantizationUnavailable,
    TrainerArgumentsError,
    MixtureError,
    NothingToResume,
)
