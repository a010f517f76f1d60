"""speaker_leak: a character turn goes on to write the other speaker's lines.

"User: ..." on a line of its own, the user's name and a colon, or {{user}}:/<USER>: inside
a character turn: trained on, the model learns to answer for the user.
"""

from __future__ import annotations

import functools
import re

from pipeline.stages.quality.config import SpeakerLeakConfig
from pipeline.stages.quality.conversation import Conversation
from pipeline.stages.quality.lint import LintStage, excerpt

LABELS = ("User", "Human", "You", "用户", "{{user}}", "<USER>")


class SpeakerLeakStage(LintStage):
    """Finds a line inside a character turn that opens with another speaker's label."""

    reason = "speaker_leak"

    def __init__(self, config: SpeakerLeakConfig):
        super().__init__(config.policy)
        self.labels = tuple(LABELS) + tuple(config.labels)

    def find(self, conversation: Conversation) -> str | None:
        names = {t.name for t in conversation.turns if t.role == "user" and t.name}
        pattern = _label_pattern(tuple(sorted({*self.labels, *names})))
        for turn in conversation.character_turns:
            m = pattern.search(turn.text)
            if m:
                return f"turn {turn.index}: {excerpt(turn.text, m.start(), m.end())}"
        return None


@functools.lru_cache(maxsize=1024)
def _label_pattern(labels: tuple[str, ...]) -> re.Pattern[str]:
    """Return the pattern of a line that opens with one of `labels` and a colon."""
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    # A label starts a line (or the turn), maybe in **bold**, and a colon follows.
    return re.compile(
        rf"(?:^|\n)[ \t]*[*_]*(?:{alternatives})[*_]*[ \t]*[:：]|\{{\{{user\}}\}}\s*[:：]",
        re.IGNORECASE,
    )
