"""The quality stages a recipe asks for, in the order the record pass runs them."""

from __future__ import annotations

from pipeline.stages.base import Stage
from pipeline.stages.quality.ai_exposure import AiExposureStage
from pipeline.stages.quality.config import QualityConfig
from pipeline.stages.quality.language import LanguageMismatchStage
from pipeline.stages.quality.repetition import RepetitionStage
from pipeline.stages.quality.slop import SlopStage
from pipeline.stages.quality.speaker_leak import SpeakerLeakStage
from pipeline.stages.quality.unresolved_macro import UnresolvedMacroStage


def lint_stages(config: QualityConfig) -> list[Stage]:
    """Return the role-play checks whose policy is not `off`: cheap regex checks first."""
    checks = [
        (UnresolvedMacroStage, config.unresolved_macro),
        (AiExposureStage, config.ai_exposure),
        (SpeakerLeakStage, config.speaker_leak),
        (RepetitionStage, config.repetition),
        (SlopStage, config.slop),
        (LanguageMismatchStage, config.language_mismatch),
    ]
    return [stage(section) for stage, section in checks if section.policy != "off"]


def quality_stages(config: QualityConfig) -> list[Stage]:
    """Return every quality stage of `config`, in run order."""
    return lint_stages(config)
