"""repetition: the character repeats long n-grams across its turns of one conversation.

The fact is the fraction of the character's word n-grams that repeat an earlier one (the
duplicate n-gram fraction of Gopher's quality rules, over character turns only), so a
looping reply or the same paragraph pasted into every turn is found, a catchphrase is not.
"""

from __future__ import annotations

from pipeline.stages.quality.config import RepetitionConfig
from pipeline.stages.quality.conversation import Conversation, ngrams, words
from pipeline.stages.quality.lint import LintStage


def repeated_fraction(texts: list[str], n: int) -> float:
    """Return the fraction of the n-grams of `texts` (each text on its own) seen before:
    each n-gram but the first of each distinct one."""
    grams = [gram for text in texts for gram in ngrams(words(text), n)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


class RepetitionStage(LintStage):
    """Finds conversations whose character turns repeat over `max_fraction` of their n-grams."""

    reason = "repetition"

    def __init__(self, config: RepetitionConfig):
        super().__init__(config.policy)
        self.n = config.n
        self.max_fraction = config.max_fraction

    def find(self, conversation: Conversation) -> str | None:
        fraction = repeated_fraction([t.text for t in conversation.character_turns], self.n)
        if fraction >= self.max_fraction:
            return f"{fraction:.0%} of the character's {self.n}-grams repeat"
        return None
