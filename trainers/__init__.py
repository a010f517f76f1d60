"""The role-play fine-tuning stage: a committed dataset version in, a model folder out."""

from trainers.models import ModalityMismatch, UnsupportedModel
from trainers.stage import NothingToResume, TrainResult, load_trained, train_version

__all__ = [
    "ModalityMismatch",
    "NothingToResume",
    "TrainResult",
    "UnsupportedModel",
    "load_trained",
    "train_version",
]
