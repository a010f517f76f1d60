"""The per-record cache keys: everything that decides what the record pass makes of one
record, and nothing else, so that a change recomputes exactly the records it touches.

A record's output (rejected, or kept with its variants) depends on its content as read
(media bytes included), the split it was assigned, the media limits, the code, and, for a
train record that is augmented, the seed, the augment settings and the ops of the
modalities it has: a text-only record is not touched by image or audio ops, and a
validation or test record by no op at all.

The recipe hash is left out on purpose: it changes with any op of any modality (or a new
source), yet the only trace it leaves in an output is its variants' ids and their
`augmentation.recipe_hash`, which the job rewrites when it reuses rows made under another
recipe (`passes.rebase_rows`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline.recipe import Recipe
from pipeline.record.ids import canonical_json


class CacheKeys:
    """Builds the cache keys of one recipe's records under one code identity."""

    def __init__(self, recipe: Recipe, code: dict[str, Any]):
        augment = recipe.augment
        # `code` is CodeVersion.identity(): the source digest and library versions.
        base = {"limits": recipe.limits.model_dump(mode="json"), "code": code}
        self._prefixes: dict[tuple[bool, bool, bool], str] = {}
        for augmented in (False, True):
            for images in (False, True):
                for audios in (False, True):
                    parts: dict[str, Any] = dict(base)
                    if augmented:
                        parts["augment"] = {
                            "seed": recipe.seed,
                            "copies": augment.copies,
                            "flip_guard": augment.flip_guard,
                            "audio_channels": augment.audio_channels,
                            "text": augment.text,
                            "dialogue": augment.dialogue,
                            "image": augment.image if images else None,
                            "audio": augment.audio if audios else None,
                        }
                    self._prefixes[(augmented, images, audios)] = _digest(parts)
        self.augments = augment.copies > 0

    def key(
        self, content: str, split: str, images: int, audios: int, quality: str | None = None
    ) -> str:
        """Return the key of a record with content hash `content` assigned to `split`;
        `quality` is its quality part (`quality_key_part`), None when quality is off (the
        key is then what it was before the quality layer)."""
        augmented = self.augments and split == "train"
        prefix = self._prefixes[(augmented, images > 0, audios > 0)]
        tail = f"|{quality}" if quality is not None else ""
        return hashlib.sha256(f"{prefix}|{content}|{split}{tail}".encode()).hexdigest()


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
