"""contaminated: character turns that share a long n-gram with a held-out file.

datatrove's decontamination, for role-play: the held-out files (`quality.decontaminate`)
are cut into word n-grams (13 by default; Chinese and Japanese characters count as words),
hashed into one set; a record whose character turns hold any of them is flagged or
quarantined `contaminated`, naming the file. JSON and JSONL files of any layout are read
for every string they hold (ShareGPT, OpenAI messages, PIPPA, CharacterEval...), other
files as plain UTF-8 text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import xxhash

from pipeline.stages.quality.config import DecontaminateConfig
from pipeline.stages.quality.conversation import Conversation, ngrams, words
from pipeline.stages.quality.lint import LintStage


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def held_out_texts(path: str) -> Iterator[str]:
    """Return the texts of a held-out file: JSON/JSONL strings, or its plain-text lines."""
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            for line in f:
                if line.strip():
                    yield from _strings(json.loads(line))
        elif path.endswith(".json"):
            yield from _strings(json.load(f))
        else:
            yield from f


def _hashes(text: str, n: int) -> set[int]:
    return {xxhash.xxh64_intdigest("\x1f".join(g).encode()) for g in ngrams(words(text), n)}


class HeldOutIndex:
    """The hashed n-grams of held-out files, each mapped to the first file it came from."""

    def __init__(self, paths: list[str], n: int):
        self.n = n
        self.files: dict[int, str] = {}
        for path in paths:
            name = os.path.basename(path)
            for text in held_out_texts(path):
                for h in _hashes(text, n):
                    self.files.setdefault(h, name)

    def match(self, text: str) -> str | None:
        """Return the file one of `text`'s n-grams comes from, or None."""
        return next((self.files[h] for h in _hashes(text, self.n) if h in self.files), None)


class DecontaminateStage(LintStage):
    """Finds character turns sharing an n-gram with the held-out index."""

    reason = "contaminated"

    def __init__(self, index: HeldOutIndex, config: DecontaminateConfig):
        super().__init__(config.policy)
        self.index = index

    def find(self, conversation: Conversation) -> str | None:
        for turn in conversation.character_turns:
            name = self.index.match(turn.text)
            if name is not None:
                return f"turn {turn.index} shares a {self.index.n}-gram with {name}"
        return None
