"""Text ops: character and word noise (nlpaug), spelling errors and WordNet synonyms (own code).

A text op rewrites one turn at a time. Only editable segments reach it (see protect.py),
so placeholders, the character's name and catchphrases survive untouched. What it drew is
the rewritten text itself: replaying it needs no library and no model.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import re
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from augmenters.base import (
    SKIPPED,
    Op,
    OpConfigError,
    pop_probability,
    pop_roles,
    reject_unknown,
)
from augmenters.protect import PLACEHOLDERS, has_letters, is_latin_script, segment_text
from augmenters.randomness import draw_seed, seeded_globals

# A sentence every text op must handle; a dry run on it at recipe load catches bad values.
CHECK_SENTENCE = "Yesterday the quick brown fox talked with a small friend near the old house."


class TextOp(Op):
    """A text op: rewrites the editable segments of one turn; `roles` says which turns it may touch."""

    modality = "text"
    # "latin": the op only makes sense for Latin-script text (keyboard typos, English
    # WordNet); other text is passed through and counted as skipped. "any": model-based.
    scripts: ClassVar[str] = "latin"

    def __init__(self, name: str, step: int, p: float, roles: tuple[str, ...]) -> None:
        super().__init__(name, step, p)
        self.roles = roles

    @classmethod
    def from_spec(cls, name: str, step: int, args: dict[str, Any]) -> TextOp:
        args = dict(args)
        p = pop_probability(args, cls.default_p)
        roles = pop_roles(args)
        return cls(name, step, p, roles, **cls.parse_args(name, args))

    @classmethod
    def parse_args(cls, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Return the op's own constructor arguments from `args`, validated; raise OpConfigError."""
        raise NotImplementedError

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
        "RandomWordAug": "nlpaug.augmenter.word",
        "SplitAug": "nlpaug.augmenter.word",
    }

    def __init__(self, name: str, step: int, p: float, roles: tuple[str, ...], **kwargs: Any):
        super().__init__(name, step, p, roles)
        self.kwargs = kwargs

    @classmethod
    def library_class(cls, name: str) -> type:
        """Return the nlpaug class implementing `name` (imports nlpaug: ~3 s for char, ~8 s for word)."""
        return getattr(importlib.import_module(cls.MODULES[name]), name)

    @classmethod
    def parse_args(cls, name: str, args: dict[str, Any]) -> dict[str, Any]:
        params = inspect.signature(cls.library_class(name).__init__).parameters
        for key in args:
            if key in _NLPAUG_NOT_FROM_RECIPE:
                raise OpConfigError("cannot be set from a recipe", key=key)
        reject_unknown(args, set(params) - _NLPAUG_NOT_FROM_RECIPE)
        return args

    def _augmenter(self) -> Any:
        aug = getattr(self, "_lazy_aug", None)
        if aug is None:
            try:
                aug = self.library_class(self.name)(**self.kwargs)
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


class WordSubstitutionOp(TextOp):
    """Replaces randomly chosen words with a candidate drawn from `candidates(word)`; spacing is kept."""

    ARGS: ClassVar[frozenset[str]] = frozenset(
        {"aug_min", "aug_max", "aug_p", "stopwords", "stopwords_regex"}
    )

    def __init__(
        self,
        name: str,
        step: int,
        p: float,
        roles: tuple[str, ...],
        aug_min: int = 1,
        aug_max: int | None = 10,
        aug_p: float = 0.3,
        stopwords: list[str] | None = None,
        stopwords_regex: str | None = None,
    ) -> None:
        super().__init__(name, step, p, roles)
        self.aug_min, self.aug_max, self.aug_p = aug_min, aug_max, aug_p
        self.stopwords = frozenset(w.lower() for w in stopwords or ())
        self.stopwords_regex = stopwords_regex

    @classmethod
    def parse_args(cls, name: str, args: dict[str, Any]) -> dict[str, Any]:
        reject_unknown(args, cls.ARGS)
        out = dict(args)
        aug_p = out.get("aug_p", 0.3)
        if isinstance(aug_p, bool) or not isinstance(aug_p, (int, float)) or not 0 <= aug_p <= 1:
            raise OpConfigError(f"must be a number between 0 and 1, got {aug_p!r}", key="aug_p")
        for key in ("aug_min", "aug_max"):
            v = out.get(key, 1)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise OpConfigError(f"must be a non-negative integer, got {v!r}", key=key)
        sw = out.get("stopwords")
        if sw is not None and not (isinstance(sw, list) and all(isinstance(w, str) for w in sw)):
            raise OpConfigError("must be a list of words", key="stopwords")
        if out.get("stopwords_regex") is not None:
            try:
                re.compile(out["stopwords_regex"])
            except (re.error, TypeError) as exc:
                raise OpConfigError(f"not a valid regex: {exc}", key="stopwords_regex") from None
        return out

    def candidates(self, word: str) -> list[str]:
        """Return the replacements `word` may take (sorted, so draws never depend on hash order)."""
        raise NotImplementedError

    def _eligible(self, word: str) -> bool:
        low = word.lower()
        if len(low) < 3 or low in ENGLISH_STOPWORDS or low in self.stopwords:
            return False
        return not (self.stopwords_regex and re.fullmatch(self.stopwords_regex, word))

    def rewrite(self, pieces: list[str], rng: np.random.Generator) -> list[str]:
        return [self._rewrite_one(piece, rng) for piece in pieces]

    def _rewrite_one(self, piece: str, rng: np.random.Generator) -> str:
        words = list(_WORD.finditer(piece))
        options = [
            (m, c)
            for m in words
            if self._eligible(m.group(0))
            for c in [self.candidates(m.group(0))]
            if c
        ]
        count = min(aug_count(len(words), self.aug_p, self.aug_min, self.aug_max), len(options))
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

    ARGS = WordSubstitutionOp.ARGS | {"aug_src", "lang"}

    @classmethod
    def parse_args(cls, name: str, args: dict[str, Any]) -> dict[str, Any]:
        args = dict(args)
        aug_src = args.pop("aug_src", "wordnet")
        if aug_src != "wordnet":
            raise OpConfigError(
                f"only 'wordnet' is supported offline, got {aug_src!r}", key="aug_src"
            )
        lang = args.pop("lang", "eng")
        if lang != "eng":
            raise OpConfigError(
                f"the WordNet 3.0 database is English only ('eng'), got {lang!r}", key="lang"
            )
        return super().parse_args(name, args)

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

    ARGS = WordSubstitutionOp.ARGS | {"dict_path", "include_reverse"}

    def __init__(
        self, *args: Any, dict_path: str | None = None, include_reverse: bool = True, **kw: Any
    ):
        super().__init__(*args, **kw)
        self.dict_path = dict_path
        self.include_reverse = include_reverse

    @classmethod
    def parse_args(cls, name: str, args: dict[str, Any]) -> dict[str, Any]:
        args = dict(args)
        own = {k: args.pop(k) for k in ("dict_path", "include_reverse") if k in args}
        out = super().parse_args(name, args)
        if "dict_path" in own and not isinstance(own["dict_path"], str):
            raise OpConfigError("must be a path to a misspelling dictionary file", key="dict_path")
        return {**out, **own}

    def _path(self) -> str:
        if self.dict_path:
            return self.dict_path
        spec = importlib.util.find_spec("nlpaug")
        if spec is None or not spec.submodule_search_locations:
            raise OpConfigError("nlpaug is not installed; give dict_path", key="dict_path")
        return f"{spec.submodule_search_locations[0]}/res/word/spelling/spelling_en.txt"

    def _table(self) -> dict[str, list[str]]:
        table = getattr(self, "_lazy_table", None)
        if table is None:
            table = load_spelling_table(self._path(), self.include_reverse)
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
    "SynonymAug": SynonymAug,
    "SpellingAug": SpellingAug,
}
