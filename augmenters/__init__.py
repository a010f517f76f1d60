"""Per-modality augmenters (text, image, audio) and dialogue-level ones, behind one registry."""

from augmenters.record import RecordAugmenter, merge_stats
from augmenters.registry import registered_names, validate_augment_config

__all__ = ["RecordAugmenter", "merge_stats", "registered_names", "validate_augment_config"]
