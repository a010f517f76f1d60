"""unresolved_macro: a SillyTavern/TavernAI macro left in a turn after substitution.

{{char}}, {{user}}, {{random:a,b}}, {{roll:d6}}, <BOT>, <USER>: a reader substitutes the
ones it knows; anything left reaches the model as literal braces.
"""

from __future__ import annotations

import re

from pipeline.stages.quality.config import MacroConfig
from pipeline.stages.quality.conversation import Conversation
from pipeline.stages.quality.lint import LintStage

PATTERNS = (
    r"\{\{[^{}\n]{1,80}\}\}",  # {{char}}, {{user}}, {{random:...}}, {{// comment}}, ...
    r"<(?:BOT|USER|CHAR)>",  # the Pygmalion / TavernAI name tags
    r"\[\[(?:char|user)\]\]",
)


class UnresolvedMacroStage(LintStage):
    """Finds the first macro left in any turn (system, user or character)."""

    reason = "unresolved_macro"

    def __init__(self, config: MacroConfig):
        super().__init__(config.policy)
        self.pattern = re.compile("|".join(PATTERNS + tuple(config.patterns)), re.IGNORECASE)

    def find(self, conversation: Conversation) -> str | None:
        for turn in conversation.turns:
            m = self.pattern.search(turn.text)
            if m:
                return f"turn {turn.index} ({turn.role}): {m.group(0)!r}"
        return None
