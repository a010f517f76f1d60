"""The quality stages a recipe asks for, in the order the record pass runs them.

`quality_stages` go after validation and before augment (`pipeline.execution.passes.
build_stages`; the split stage runs first but only applies the driver's plan, which already
holds each near-duplicate cluster in one group); `token_ledger_stage` goes after augment,
so variants are counted as they are written.
"""

from __future__ import annotations

from pipeline.stages.base import Stage
from pipeline.stages.quality.ai_exposure import AiExposureStage
from pipeline.stages.quality.config import QualityConfig
from pipeline.stages.quality.decontaminate import DecontaminateStage, HeldOutIndex
from pipeline.stages.quality.language import LanguageMismatchStage
from pipeline.stages.quality.near_dup import NearDupStage
from pipeline.stages.quality.planner import NearDupPlan
from pipeline.stages.quality.repetition import RepetitionStage
from pipeline.stages.quality.slop import SlopStage
from pipeline.stages.quality.speaker_leak import SpeakerLeakStage
from pipeline.stages.quality.tokens import TokenCounter, TokenLedgerStage
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


def quality_stages(
    config: QualityConfig,
    near_dup_plan: NearDupPlan | None = None,
    held_out: list[str] | None = None,
) -> list[Stage]:
    """Return the lint, decontamination and near-duplicate stages of `config`, in run order.

    `near_dup_plan` is the driver's `plan_near_duplicates` result (None: near-dup is off);
    `held_out` the `decontaminate` files resolved against the recipe's folder.
    """
    stages = lint_stages(config)
    if held_out:
        index = HeldOutIndex(held_out, config.decontamination.n)
        stages.append(DecontaminateStage(index, config.decontamination))
    if near_dup_plan is not None and config.near_dup.enabled:
        stages.append(NearDupStage(near_dup_plan, config.near_dup.group_media))
    return stages


def token_ledger_stage(config: QualityConfig, counter: TokenCounter) -> Stage | None:
    """Return the token ledger stage (None when `count_tokens` is off)."""
    if not config.count_tokens:
        return None
    return TokenLedgerStage(counter, config.max_tokens, config.max_tokens_policy)
