"""Text ops: character noise (nlpaug); word noise, spelling errors and WordNet synonyms (own code).

A text op rewrites one turn at a time. Only editable segments reach it (see protect.py),
so placeholders, the character's name and catchphrases survive untouched. What it drew is
the rewritten text itself: replaying it needs no library and no model.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field

from augmenters.base import SKIPPED, OpConfigError, ParamsOp, parse_params
from augmenters.config import NonNegativeInt, OpParams, Probability
from augmenters.libraries import import_op_library
from augmenters.protect import PLACEHOLDERS, has_letters, is_latin_script, segment_text
from augmenters.randomness import draw_seed, seeded_globals
from pipeline.record.schema import ROLES

# A sentence every text op must handle; a dry run on it at recipe load catches bad values.
CHECK_SENTENCE = "Yesterday the quick brown fox talked with a small friend near the old house."


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _known_roles(roles: list[str]) -> list[str]:
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValueError(f"unknown role(s) {bad}; use {list(ROLES)}")
    return roles


# `roles: user` reads as `roles: [user]`.
Roles = Annotated[
    list[str],
    BeforeValidator(_one_or_many),
    AfterValidator(_known_roles),
    Field(min_length=1, description=f"a non-empty list of roles from {list(ROLES)}"),
]


class TextOp(ParamsOp):
    """A text op: rewrites the editable segments of one turn; `roles` says which turns it may touch."""

    class Params(OpParams):
        # A character's lines are training targets: by default only user turns are noised.
        roles: Roles = ["user"]

    params: Params
    modality = "text"
    # "latin": the op only makes sense for Latin-script text (keyboard typos, English
    # WordNet); other text is passed through and counted as skipped. "any": model-based.
    scripts: ClassVar[str] = "latin"

    @property
    def roles(self) -> list[str]:
        """The roles of the turns this op may rewrite."""
        return self.params.roles

    def rewrite(self, pieces: list[str], rng: np.random.Generator) -> list[str]:
        """Return the rewritten form of each editable piece (same length list)."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, text: str, pattern: re.Pattern[str] | None) -> Any:
        """Return {"text": rewritten turn}, None when nothing changed, or SKIPPED for text the op can't handle."""
        segments = segment_text(text, pattern)
        wordy = [i for i, s in enumerate(segments) if s.editable and has_letters(s.text)]
        usable = [i for i in wordy if self.scripts == "any" or is_latin_script(segments[i].text)]
        if not usable:
            return SKIPPED if wordy else None
        out = [s.text for s in segments]
        for i, new in zip(usable, self.rewrite([out[i] for i in usable], rng), strict=True):
            # Libraries re-space punctuation; a rewrite that only moved whitespace is no change.
            if new.split() != out[i].split():
                out[i] = new
        result = "".join(out)
        if any(result.count(ph) != text.count(ph) for ph in PLACEHOLDERS):
            return None  # a rewrite must never make or break a media placeholder
        return {"text": result} if result != text else None

    def apply(self, text: str, params: dict[str, Any]) -> str:
        """Return the turn text the params describe."""
        return params["text"]

    def check(self) -> None:
        self.rewrite([CHECK_SENTENCE], np.random.default_rng(0))


# --- nlpaug-backed noise -------------------------------------------------------------

# Arguments that are code (callables) or nlpaug's own bookkeeping, not recipe data.
_NLPAUG_NOT_FROM_RECIPE = {"self", "name", "verbose", "tokenizer", "reverse_tokenizer"}


class NlpaugOp(TextOp):
    """An nlpaug augmenter run under a seeded, restored global RNG (nlpaug draws from `random`)."""

    MODULES: ClassVar[dict[str, str]] = {
        "KeyboardAug": "nlpaug.augmenter.char",
        "OcrAug": "nlpaug.augmenter.char",
        "RandomCharAug": "nlpaug.augmenter.char",
    }

    def __init__(self, name: str, step: int, params: TextOp.Params, kwargs: dict[str, Any]):
        super().__init__(name, step, params)
        self.kwargs = kwargs

    @classmethod
    def library_class(cls, name: str) -> type:
        """Return the nlpaug class implementing `name` (imported without torch: libraries.py)."""
        return getattr(import_op_library(cls.MODULES[name]), name)

    @classmethod
    def from_spec(cls, name: str, step: int, args: dict[str, Any]) -> NlpaugOp:
        """Return the op: `p` and `roles` are ours, every other argument is nlpaug's to check."""
        params = parse_params(
            cls.Params, {k: v for k, v in args.items() if k in cls.Params.model_fields}
        )
        kwargs = {k: v for k, v in args.items() if k not in cls.Params.model_fields}
        signature = inspect.signature(cls.library_class(name).__init__).parameters
        for key in kwargs:
            if key in _NLPAUG_NOT_FROM_RECIPE:
                raise OpConfigError("cannot be set from a recipe", key=key)
            if key not in signature:
                raise OpConfigError("unknown argument", key=key)
        return cls(name, step, params, kwargs)

    def _augmenter(self) -> Any:
        aug = getattr(self, "_lazy_aug", None)
        if aug is None:
            try:
                # Whitespace tokens: nlpaug's default tokenizer splits "we're" and "there," and
                # its detokenizer then writes "we ' re" and "there ,".
                aug = self.library_class(self.name)(
                    **self.kwargs, tokenizer=str.split, reverse_tokenizer=" ".join
                )
            except (TypeError, ValueError, KeyError, AssertionError, FileNotFoundError) as exc:
                raise OpConfigError(f"nlpaug rejected the arguments: {exc}") from exc
            self._lazy_aug = aug
        return aug

    def rewrite(self, pieces: list[str], rng: np.random.Generator) -> list[str]:
        aug = self._augmenter()
        out = []
        with seeded_globals(draw_seed(rng)):
            for piece in pieces:
                result = aug.augment(piece)
                if isinstance(result, list):
                    result = result[0] if result else piece
                out.append(result if isinstance(result, str) else piece)
        return out

    def check(self) -> None:
        try:
            super().check()
        except OpConfigError:
            raise
        except Exception as exc:  # nlpaug validates little up front; a dry run finds bad values
            raise OpConfigError(f"nlpaug failed on a test sentence: {exc!r}") from exc


# --- own word-level ops ----------------------------------------------------------------

# A word: letters (any script) with inner apostrophes, standing alone between spaces or
# punctuation. Letter runs glued to digits or symbols ("h2Zr", "l0o<") are noise, not words.
_EDGE = r"\s.,!?;:\"'“”‘’()\[\]…\-"
_WORD = re.compile(rf"(?<![^{_EDGE}])[^\W\d_]+(?:['’][^\W\d_]+)*(?![^{_EDGE}])")

# Function words: replacing or misspelling them adds noise without meaning, and WordNet
# maps some of them to odd senses ("can" -> "tin").
ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up was we were what
    when where which while who whom why will with would you your yours yourself yourselves
    yes ok okay oh""".split()
)


def aug_count(size: int, aug_p: float, aug_min: int | None, aug_max: int | None) -> int:
    """Return how many of `size` tokens to change, as nlpaug counts it."""
    cnt = int(math.ceil(aug_p * size))
    if aug_min and cnt < aug_min:
        return aug_min
    if aug_max and cnt > aug_max:
        return aug_max
    return cnt


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regex: {exc}") from None
    return pattern


class WordOp(TextOp):
    """Base of our word-level ops: nlpaug's count arguments and stopwords; edits keep the text's spacing."""

    class Params(TextOp.Params):
        # How many words to change, as nlpaug counts: ceil(aug_p * words), then clamped.
        aug_min: NonNegativeInt | None = Field(1, description="a non-negative integer")
        aug_max: NonNegativeInt | None = Field(10, description="a non-negative integer")
        aug_p: Probability = 0.3
        stopwords: list[str] | None = Field(None, description="a list of words")
        stopwords_regex: Annotated[str, AfterValidator(_compiles)] | None = None

    params: Params
    # Words never chosen unless the recipe's own stopwords say otherwise.
    builtin_stopwords: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, step: int, params: Params) -> None:
        super().__init__(name, step, params)
        self.stopwords = frozenset(w.lower() for w in params.stopwords or ())

    def _eligible(self, word: str) -> bool:
        low = word.lower()
        if low in self.builtin_stopwords or low in self.stopwords:
            return False
        regex = self.params.stopwords_regex
        return not (regex and re.fullmatch(regex, word))

    def count(self, size: int) -> int:
        """Return how many of `size` tokens to change."""
        return aug_count(size, self.params.aug_p, self.params.aug_min, self.params.aug_max)

    def rewrite(self, pieces: list[str], rng: np.random.Generator) -> list[str]:
        return [self._rewrite_one(piece, rng) for piece in pieces]

    def _rewrite_one(self, piece: str, rng: np.random.Generator) -> str:
        raise NotImplementedError


def _splice(piece: str, edits: list[tuple[int, int, str]]) -> str:
    """Return `piece` with each (start, end, replacement) edit applied; edits must not overlap."""
    out, pos = [], 0
    for start, end, replacement in sorted(edits):
        out.append(piece[pos:start])
        out.append(replacement)
        pos = end
    out.append(piece[pos:])
    return "".join(out)


_TOKEN = re.compile(r"\S+")


class RandomWordAug(WordOp):
    """Delete, swap, substitute or crop whole words (nlpaug's RandomWordAug arguments).

    Own code rather than nlpaug's: nlpaug splits punctuation into tokens and moves it
    around ("! hi Miku,"), joins everything with single spaces, and importing
    nlpaug.augmenter.word costs 7-10 s per process (it pulls in transformers and nltk).
    Here a word is a whitespace-delimited token, so punctuation travels with its word.
    """

    class Params(WordOp.Params):
        action: Literal["delete", "swap", "substitute", "crop"] = "delete"
        # What `substitute` writes in place of a word (nlpaug's default: "_").
        target_words: Annotated[list[str], Field(min_length=1)] | None = Field(
            None, description="a non-empty list of words"
        )

    params: Params

    def __init__(self, name: str, step: int, params: Params) -> None:
        super().__init__(name, step, params)
        self.action = params.action
        self.target_words = params.target_words or ["_"]

    def _rewrite_one(self, piece: str, rng: np.random.Generator) -> str:
        tokens = list(_TOKEN.finditer(piece))
        if len(tokens) < 2:
            return piece  # dropping or moving the only word leaves nothing to learn from
        # Bare punctuation ("-", "...") is not a word to drop or move.
        eligible = [
            i
            for i, t in enumerate(tokens)
            if _has_word_char(t.group(0)) and self._eligible(t.group(0))
        ]
        # Deleting every word would leave an empty turn: keep at least one.
        limit = (
            len(eligible)
            if self.action in ("swap", "substitute")
            else min(len(eligible), len(tokens) - 1)
        )
        count = min(self.count(len(tokens)), limit)
        if count <= 0:
            return piece
        words = [t.group(0) for t in tokens]
        if self.action == "crop":
            first = int(rng.integers(len(tokens) - count + 1))
            chosen = list(range(first, first + count))
        else:
            chosen = sorted(rng.choice(eligible, size=count, replace=False).tolist())
        if self.action == "swap":
            for i in chosen:
                j = (
                    i + 1
                    if i == 0
                    else i - 1
                    if i == len(words) - 1
                    else i + int(rng.choice([-1, 1]))
                )
                words[i], words[j] = words[j], words[i]
            _keep_sentence_case(words, [t.group(0) for t in tokens])
            return _splice(
                piece, [(t.start(), t.end(), w) for t, w in zip(tokens, words, strict=True)]
            )
        if self.action == "substitute":
            edits = [
                (
                    tokens[i].start(),
                    tokens[i].end(),
                    self.target_words[int(rng.integers(len(self.target_words)))],
                )
                for i in chosen
            ]
            return _splice(piece, edits)
        # delete / crop: remove each token with the space after it (before it, for the last one)
        drop = set(chosen)
        kept = [t.group(0) for i, t in enumerate(tokens) if i not in drop]
        if 0 in drop and tokens[0].group(0)[:1].isupper() and kept[0][:1].islower():
            kept[0] = kept[0][:1].upper() + kept[0][1:]
        spaces = [piece[tokens[i].end() : tokens[i + 1].start()] for i in range(len(tokens) - 1)]
        kept_idx = [i for i in range(len(tokens)) if i not in drop]
        out = []
        for n, i in enumerate(kept_idx):
            out.append(kept[n])
            if n + 1 < len(kept_idx):
                out.append(spaces[i] if i < len(spaces) else " ")
        return piece[: tokens[0].start()] + "".join(out) + piece[tokens[-1].end() :]


def _has_word_char(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def _keep_sentence_case(words: list[str], original: list[str]) -> None:
    """After a swap, give the first word the capital the sentence had, the moved one its lower case."""
    if words[0] == original[0] or not original[0][:1].isupper() or original[0] == "I":
        return
    for i, w in enumerate(words):
        if w == original[0] and i != 0 and not w.isupper():
            words[i] = w[:1].lower() + w[1:]
    if words[0][:1].islower():
        words[0] = words[0][:1].upper() + words[0][1:]


class SplitAug(WordOp):
    """Split words in two at a random inner position (nlpaug's SplitAug arguments), spacing kept."""

    class Params(WordOp.Params):
        min_char: int = Field(4, ge=2, description="an integer >= 2")

    params: Params

    def _rewrite_one(self, piece: str, rng: np.random.Generator) -> str:
        words = list(_WORD.finditer(piece))
        options = [
            m
            for m in words
            if len(m.group(0)) >= self.params.min_char and self._eligible(m.group(0))
        ]
        count = min(self.count(len(words)), len(options))
        if count <= 0:
            return piece
        edits = []
        for idx in sorted(rng.choice(len(options), size=count, replace=False).tolist()):
            m = options[idx]
            cut = int(rng.integers(1, len(m.group(0))))
            edits.append((m.start(), m.end(), m.group(0)[:cut] + " " + m.group(0)[cut:]))
        return _splice(piece, edits)


class WordSubstitutionOp(WordOp):
    """Replaces randomly chosen words with a candidate drawn from `candidates(word)`; spacing is kept."""

    builtin_stopwords = ENGLISH_STOPWORDS

    def _eligible(self, word: str) -> bool:
        return len(word) >= 3 and super()._eligible(word)

    def candidates(self, word: str) -> list[str]:
        """Return the replacements `word` may take (sorted, so draws never depend on hash order)."""
        raise NotImplementedError

    def _rewrite_one(self, piece: str, rng: np.random.Generator) -> str:
        words = list(_WORD.finditer(piece))
        options = [
            (m, c)
            for m in words
            if self._eligible(m.group(0))
            for c in [self.candidates(m.group(0))]
            if c
        ]
        count = min(self.count(len(words)), len(options))
        if count <= 0:
            return piece
        chosen = sorted(rng.choice(len(options), size=count, replace=False).tolist())
        out, pos = [], 0
        for idx in chosen:
            match, cands = options[idx]
            out.append(piece[pos : match.start()])
            out.append(_match_case(match.group(0), cands[int(rng.integers(len(cands)))]))
            pos = match.end()
        out.append(piece[pos:])
        return "".join(out)


def _match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


class SynonymAug(WordSubstitutionOp):
    """Replace words by a WordNet synonym of their most frequent sense (nlpaug's SynonymAug arguments).

    Own code rather than nlpaug's: nlpaug needs nltk's POS tagger data (a download) and
    nltk's WordNet reader, which cannot open Debian's wordnet-base folder.
    """

    class Params(WordSubstitutionOp.Params):
        # nlpaug's arguments, each with the one value that works offline.
        aug_src: Literal["wordnet"] = Field(
            "wordnet", description="'wordnet' (the only source available offline)"
        )
        lang: Literal["eng"] = Field(
            "eng", description="'eng' (the WordNet 3.0 database is English only)"
        )

    def _wordnet(self) -> Any:
        wn = getattr(self, "_lazy_wordnet", None)
        if wn is None:
            from augmenters.wordnet import WordNetMissing, find_wordnet, load_wordnet

            try:
                wn = load_wordnet(str(find_wordnet()))
            except WordNetMissing as exc:
                raise OpConfigError(str(exc)) from None
            self._lazy_wordnet = wn
        return wn

    def candidates(self, word: str) -> list[str]:
        return self._wordnet().synonyms(word)

    def check(self) -> None:
        from augmenters.wordnet import WordNetMissing, find_wordnet

        try:
            find_wordnet()  # cheap: the full index loads lazily in the worker
        except WordNetMissing as exc:
            raise OpConfigError(str(exc)) from None


class SpellingAug(WordSubstitutionOp):
    """Replace words by a common misspelling from a dictionary (nlpaug's SpellingAug arguments).

    Own code rather than nlpaug's: nlpaug stores each word's misspellings via `set()`, so
    its choice depends on PYTHONHASHSEED and differs between processes, and it caches one
    dictionary per process whatever `dict_path` says. The default dictionary is the one
    nlpaug ships (`nlpaug/res/word/spelling/spelling_en.txt`).
    """

    class Params(WordSubstitutionOp.Params):
        dict_path: str | None = Field(None, description="a path to a misspelling dictionary file")
        # Also map each misspelling back to its word.
        include_reverse: bool = True

    params: Params

    def _path(self) -> str:
        if self.params.dict_path:
            return self.params.dict_path
        spec = importlib.util.find_spec("nlpaug")
        if spec is None or not spec.submodule_search_locations:
            raise OpConfigError("nlpaug is not installed; give dict_path", key="dict_path")
        return f"{spec.submodule_search_locations[0]}/res/word/spelling/spelling_en.txt"

    def _table(self) -> dict[str, list[str]]:
        table = getattr(self, "_lazy_table", None)
        if table is None:
            table = load_spelling_table(self._path(), self.params.include_reverse)
            self._lazy_table = table
        return table

    def candidates(self, word: str) -> list[str]:
        return self._table().get(word, [])

    def check(self) -> None:
        import os

        path = self._path()
        if not os.path.isfile(path):
            raise OpConfigError(
                f"misspelling dictionary {path} not found; give dict_path=<file with lines "
                "'word misspelling1 misspelling2 ...'> (nlpaug ships spelling_en.txt)",
                key="dict_path",
            )


def load_spelling_table(path: str, include_reverse: bool) -> dict[str, list[str]]:
    """Return word -> sorted misspellings from a file of 'word miss1 miss2 ...' lines."""
    table: dict[str, set[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            tokens = line.split()
            if len(tokens) < 2:
                continue
            table.setdefault(tokens[0], set()).update(tokens[1:])
            if include_reverse:
                for value in tokens[1:]:
                    table.setdefault(value, set()).add(tokens[0])
    return {k: sorted(v - {k}) for k, v in table.items() if v - {k}}


TEXT_OPS: dict[str, Callable[..., TextOp] | type[TextOp]] = {
    **dict.fromkeys(NlpaugOp.MODULES, NlpaugOp),
    "RandomWordAug": RandomWordAug,
    "SplitAug": SplitAug,
    "SynonymAug": SynonymAug,
    "SpellingAug": SpellingAug,
}
