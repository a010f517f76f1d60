"""ai_exposure: the character says it is an AI or a language model, or refuses like one.

Only self-descriptions and refusal boilerplate count, not the topic: a sci-fi character may
talk about artificial intelligence; "as an AI language model, I cannot" is the defect.
"""

from __future__ import annotations

import re

from pipeline.stages.quality.config import AiExposureConfig
from pipeline.stages.quality.conversation import Conversation
from pipeline.stages.quality.lint import LintStage, excerpt

ENGLISH = (
    r"as an ai\b",
    r"as an? (?:ai |large )?language model",
    r"as an artificial intelligence",
    r"as an? (?:ai|virtual|digital) assistant",
    r"i(?: am|'m) (?:just |only |merely )?an? (?:ai|artificial intelligence|chatbot|"
    r"(?:large )?language model|virtual assistant|ai assistant)\b",
    r"i(?: am|'m) a (?:large )?language model",
    r"i (?:was|am|'m) (?:created|trained|developed) by (?:openai|anthropic|google|meta)",
    r"i (?:do not|don't) have (?:personal )?(?:feelings|emotions|opinions|a physical body)"
    r" (?:as|like) (?:an? )?(?:ai|humans do)",
    r"i(?:'m| am) (?:sorry|afraid),? but i (?:can(?:no|')t|am unable to|won't) "
    r"(?:assist|help|comply|fulfill|provide|engage|continue) (?:with )?(?:that|this|your)",
    r"i can(?:no|')t (?:assist|help) with (?:that|this) request",
    r"against (?:my|openai's) (?:programming|guidelines|content polic)",
)
CHINESE = (
    r"作为(?:一个|一名)?(?:人工智能|ai)",
    r"作为(?:一个)?(?:大型)?语言模型",
    r"我(?:只)?是(?:一个|一名)?(?:人工智能|ai)(?:助手|语言模型|程序)?",
    r"我(?:只)?是(?:一个)?(?:大型)?语言模型",
    r"作为(?:一个)?(?:ai|智能|虚拟)助手",
    r"我(?:无法|不能)(?:满足|协助|提供)(?:你|您)?的?(?:这个)?(?:请求|要求)",
    r"由\s*openai\s*(?:开发|训练)",
)


class AiExposureStage(LintStage):
    """Finds the first AI self-description or refusal in a character turn."""

    reason = "ai_exposure"

    def __init__(self, config: AiExposureConfig):
        super().__init__(config.policy)
        # Lower-case patterns against lower-cased text: re's IGNORECASE is ~4x slower here.
        extra = tuple(re.escape(p.lower()) for p in config.phrases)
        self.pattern = re.compile("|".join(ENGLISH + CHINESE + extra))

    def find(self, conversation: Conversation) -> str | None:
        for turn in conversation.character_turns:
            low = turn.text.lower()
            m = self.pattern.search(low)
            if m:
                shown = turn.text if len(low) == len(turn.text) else low
                return f"turn {turn.index}: {excerpt(shown, m.start(), m.end())}"
        return None
