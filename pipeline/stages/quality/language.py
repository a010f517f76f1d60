"""language_mismatch: a turn in another language than the conversation's.

The identifier is lingua (lingua-language-detector): its n-gram models ship inside the
wheel, so nothing is downloaded at run time, and it is accurate on the short texts turns
are. It chooses among `quality.language_mismatch.languages` only (loading all 75 models
takes ~30 s; ten take ~2 s, once per process) and answers "unsure" (not judged) when the
two best languages are close. The conversation's language is the recipe's declared one,
else the majority of its character turns by length; it lands in `quality.language`.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any

import pyarrow as pa

from pipeline.stages.base import BatchContext, StageOutput
from pipeline.stages.quality.column import set_fields
from pipeline.stages.quality.config import LanguageConfig
from pipeline.stages.quality.conversation import Conversation, Turn
from pipeline.stages.quality.lint import LintStage

_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)
# Stage directions (*smiles*) and bracketed game events carry few words of the language.
_ACTIONS = re.compile(r"\*[^*\n]*\*|\[[^\]\n]*\]")
# Below this relative distance between the best two languages the identifier is unsure.
MIN_RELATIVE_DISTANCE = 0.25
# Languages not written in Latin script. Two Latin-script languages share names, loanwords
# and spelling, so a short English line full of names reads as Portuguese; telling them
# apart needs SAME_SCRIPT_MIN_CHARS letters. Across scripts a short turn is unambiguous.
NON_LATIN = frozenset(
    {
        "zh",
        "ja",
        "ko",
        "ru",
        "uk",
        "bg",
        "sr",
        "mk",
        "be",
        "kk",
        "mn",
        "el",
        "he",
        "ar",
        "fa",
        "ur",
        "hi",
        "mr",
        "bn",
        "pa",
        "gu",
        "ta",
        "te",
        "th",
        "ka",
        "hy",
    }
)
SAME_SCRIPT_MIN_CHARS = 80
# A turn's language is judged on its first characters: more adds cost, not accuracy.
SAMPLE_CHARS = 160
# From this length lingua's low-accuracy (trigram-only) mode is about as accurate and ~4x
# faster; shorter turns get the full models.
LOW_ACCURACY_FROM = 120


@functools.lru_cache(maxsize=8)
def detector(languages: tuple[str, ...], low_accuracy: bool = False) -> Any:
    """Return a lingua detector over `languages` (ISO 639-1), built once per process."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    chosen = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in languages]
    builder = LanguageDetectorBuilder.from_languages(*chosen).with_minimum_relative_distance(
        MIN_RELATIVE_DISTANCE
    )
    return (builder.with_low_accuracy_mode() if low_accuracy else builder).build()


def detect(texts: list[str], languages: tuple[str, ...]) -> list[str | None]:
    """Return the ISO 639-1 code of each text (None: unsure), judged on its first characters."""
    samples = [t[:SAMPLE_CHARS] for t in texts]
    out: list[str | None] = [None] * len(samples)
    for low in (False, True):
        rows = [i for i, t in enumerate(samples) if (len(t) >= LOW_ACCURACY_FROM) == low]
        found = detector(languages, low).detect_languages_in_parallel_of([samples[i] for i in rows])
        for i, lang in zip(rows, found, strict=True):
            out[i] = lang.iso_code_639_1.name.lower() if lang is not None else None
    return out


class LanguageMismatchStage(LintStage):
    """Finds user or character turns in another language than the conversation's."""

    reason = "language_mismatch"

    def __init__(self, config: LanguageConfig):
        super().__init__(config.policy)
        self.config = config
        self._languages: dict[tuple[str, int], str] = {}  # (record id, turn) -> ISO code
        self._conversation: dict[str, str | None] = {}

    def _judged(self, turn: Turn) -> str | None:
        if turn.role == "system":
            return None
        text = _ACTIONS.sub(" ", turn.text)
        return text if len(_LETTERS.findall(text)) >= self.config.min_chars else None

    def prepare(self, batch: pa.Table, found: list[Conversation]) -> None:
        keys, texts = [], []
        for conv in found:
            for turn in conv.turns:
                text = self._judged(turn)
                if text is not None:
                    keys.append((conv.id, turn.index))
                    texts.append(text)
        detected = detect(texts, tuple(self.config.languages))
        self._languages = {k: lang for k, lang in zip(keys, detected, strict=True) if lang}
        self._conversation = {conv.id: self._language_of(conv) for conv in found}

    def _language_of(self, conv: Conversation) -> str | None:
        if self.config.expected:
            return self.config.expected
        weights: Counter[str] = Counter()
        for turn in conv.character_turns:
            lang = self._languages.get((conv.id, turn.index))
            if lang:
                weights[lang] += len(turn.text)
        return weights.most_common(1)[0][0] if weights else None

    def find(self, conversation: Conversation) -> str | None:
        expected = self._conversation.get(conversation.id)
        if expected is None:
            return None
        for turn in conversation.turns:
            lang = self._languages.get((conversation.id, turn.index))
            if lang is None or lang == expected:
                continue
            same_script = (lang in NON_LATIN) == (expected in NON_LATIN)
            if same_script and len(_LETTERS.findall(turn.text)) < SAME_SCRIPT_MIN_CHARS:
                continue
            return f"turn {turn.index} ({turn.role}) is {lang}, the conversation {expected}"
        return None

    def process(self, batch: pa.Table, ctx: BatchContext) -> StageOutput:
        out = super().process(batch, ctx)
        ids = out.table["id"].to_pylist()
        languages = {row: self._conversation.get(i) for row, i in enumerate(ids)}
        out.table = set_fields(out.table, "language", languages)
        return out
