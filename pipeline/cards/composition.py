"""Facts from the shards: what each split holds, computed by streaming light columns.

Composition numbers come from the shards themselves, never from the manifest's claims, and
without materialising media bytes in Python (media are counted from list offsets, or in
Parquet from the `path` leaf).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.cards.languages import count_scripts
from pipeline.record.schema import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER, SPLITS
from pipeline.store.manifest import ShardEntry
from pipeline.store.shards import read_shard_batches

# Light columns only: media are counted from list offsets (or, in Parquet, from the
# `path` leaf), so no image or audio bytes are read into Python.
_ARROW_COLUMNS = ["split", "parent_id", "character", "messages", "images", "audios"]
_PARQUET_COLUMNS = [
    "split",
    "parent_id",
    "character.name",
    "messages",
    "images.list.element.path",
    "audios.list.element.path",
]

# Rows counted at once (`compute_composition`): light columns only, a few MB of text.
COUNT_ROWS = 16384
TURN_BUCKETS = (2, 4, 8, 16, 32)  # messages per conversation: <=2, 3-4, 5-8, ..., >32
TURN_CHAR_BUCKETS = (16, 64, 256, 1024)  # characters per message
MODALITIES = ("text only", "image", "audio", "image + audio")
TOP_CHARACTERS = 20


@dataclass
class SplitComposition:
    """What one split holds: records, variants, media and conversation lengths."""

    rows: int = 0
    originals: int = 0
    variants: int = 0
    images: int = 0
    audios: int = 0
    messages: int = 0
    min_messages: int | None = None
    max_messages: int | None = None
    modalities: Counter[str] = field(default_factory=Counter)
    turn_buckets: Counter[int] = field(default_factory=Counter)


@dataclass
class RoleLength:
    """Characters per message of one role."""

    messages: int = 0
    chars: int = 0
    min_chars: int | None = None
    max_chars: int | None = None


@dataclass
class Composition:
    """Statistics of a version's records, computed from its shards."""

    splits: dict[str, SplitComposition] = field(default_factory=dict)
    characters: Counter[tuple[str | None, str]] = field(default_factory=Counter)
    roles: dict[str, RoleLength] = field(default_factory=dict)
    turn_char_buckets: Counter[int] = field(default_factory=Counter)
    scripts: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.splits.values())

    @property
    def images(self) -> int:
        return sum(s.images for s in self.splits.values())

    @property
    def audios(self) -> int:
        return sum(s.audios for s in self.splits.values())

    def split(self, name: str) -> SplitComposition:
        return self.splits.setdefault(name, SplitComposition())

    def merge(self, other: Composition) -> None:
        """Add `other` (the rows after this one's): merged in shard order, every counter
        keeps the order one pass over the shards gives it."""
        for name, theirs in other.splits.items():
            s = self.split(name)
            for count in ("rows", "originals", "variants", "images", "audios", "messages"):
                setattr(s, count, getattr(s, count) + getattr(theirs, count))
            s.min_messages, s.max_messages = _span(
                (s.min_messages, s.max_messages), (theirs.min_messages, theirs.max_messages)
            )
            s.modalities.update(theirs.modalities)
            s.turn_buckets.update(theirs.turn_buckets)
        self.characters.update(other.characters)
        for role, theirs_role in other.roles.items():
            r = self.roles.setdefault(role, RoleLength())
            r.messages += theirs_role.messages
            r.chars += theirs_role.chars
            r.min_chars, r.max_chars = _span(
                (r.min_chars, r.max_chars), (theirs_role.min_chars, theirs_role.max_chars)
            )
        self.turn_char_buckets.update(other.turn_char_buckets)
        self.scripts.update(other.scripts)


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


def _span(
    ours: tuple[int | None, int | None], theirs: tuple[int | None, int | None]
) -> tuple[int | None, int | None]:
    """Return the (min, max) covering both; None is an empty side."""
    lo, hi = ours
    if theirs[0] is not None:
        lo = _min(lo, theirs[0])
    if theirs[1] is not None:
        hi = _max(hi, theirs[1])
    return lo, hi


def _list_lengths(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_integer(column.type):  # counted already (`_media_counted`)
        return column.to_numpy(zero_copy_only=False)
    return pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)


def _media_counted(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Return `batch` with its media columns replaced by how many items each row holds."""
    for name in ("images", "audios"):
        at = batch.schema.get_field_index(name)
        lengths = pc.fill_null(pc.list_value_length(batch.column(at)), 0)
        batch = batch.set_column(at, name, lengths)
    return batch


class CompositionCounter:
    """Accumulates a Composition from record batches of light columns."""

    def __init__(self) -> None:
        self.composition = Composition()

    def add(self, batch: pa.RecordBatch) -> None:
        """Fold one batch (columns of `_ARROW_COLUMNS`, media possibly reduced) in."""
        c = self.composition
        splits = pc.fill_null(batch.column("split"), "(none)").to_numpy(zero_copy_only=False)
        variants = pc.is_valid(batch.column("parent_id")).to_numpy(zero_copy_only=False)
        character = batch.column("character")
        names = (
            pc.struct_field(character, "name") if pa.types.is_struct(character.type) else character
        )
        n_images = _list_lengths(batch.column("images"))
        n_audios = _list_lengths(batch.column("audios"))
        n_messages = _list_lengths(batch.column("messages"))
        modality = (n_images > 0).astype(np.int8) + 2 * (n_audios > 0).astype(np.int8)
        turn_bucket = np.searchsorted(np.array(TURN_BUCKETS), n_messages, side="left")

        for split in np.unique(splits):
            mask = splits == split
            s = c.split(str(split))
            rows = int(mask.sum())
            s.rows += rows
            s.variants += int(variants[mask].sum())
            s.originals += rows - int(variants[mask].sum())
            s.images += int(n_images[mask].sum())
            s.audios += int(n_audios[mask].sum())
            s.messages += int(n_messages[mask].sum())
            s.min_messages = _min(s.min_messages, int(n_messages[mask].min()))
            s.max_messages = _max(s.max_messages, int(n_messages[mask].max()))
            for m, n in enumerate(np.bincount(modality[mask], minlength=len(MODALITIES))):
                s.modalities[MODALITIES[m]] += int(n)
            for bucket, n in enumerate(np.bincount(turn_bucket[mask])):
                if n:
                    s.turn_buckets[bucket] += int(n)

        pairs = pa.table({"name": names, "split": splits}).group_by(["name", "split"])
        for row in pairs.aggregate([([], "count_all")]).to_pylist():
            c.characters[(row["name"], row["split"])] += row["count_all"]

        self._add_messages(batch.column("messages"))

    def _add_messages(self, messages: pa.Array) -> None:
        c = self.composition
        flat = pc.list_flatten(messages)
        if len(flat) == 0:
            return
        roles = pc.fill_null(pc.struct_field(flat, "role"), "(none)")
        content = pc.fill_null(pc.struct_field(flat, "content"), "")
        # Placeholders are markup, not language: drop them before counting letters.
        text = pc.replace_substring(content, IMAGE_PLACEHOLDER, "")
        text = pc.replace_substring(text, AUDIO_PLACEHOLDER, "")
        lengths = pc.utf8_length(text)
        table = pa.table({"role": roles, "chars": lengths})
        grouped = table.group_by("role").aggregate(
            [("chars", "count"), ("chars", "sum"), ("chars", "min"), ("chars", "max")]
        )
        for row in grouped.to_pylist():
            r = c.roles.setdefault(row["role"], RoleLength())
            r.messages += row["chars_count"]
            r.chars += row["chars_sum"]
            r.min_chars = _min(r.min_chars, row["chars_min"])
            r.max_chars = _max(r.max_chars, row["chars_max"])
        buckets = np.searchsorted(np.array(TURN_CHAR_BUCKETS), lengths.to_numpy(), side="left")
        for bucket, n in enumerate(np.bincount(buckets)):
            if n:
                c.turn_char_buckets[bucket] += int(n)
        c.scripts.update(count_scripts(text))


def iter_shard_batches(path: str, fs: Any = None) -> Iterator[pa.RecordBatch]:
    """Yield record batches of a shard's light columns; media stay on disk (or mapped)."""
    return read_shard_batches(path, columns=_ARROW_COLUMNS, parquet_columns=_PARQUET_COLUMNS, fs=fs)


def compute_composition(version_dir: str, shards: list[ShardEntry], fs: Any = None) -> Composition:
    """Return the composition statistics of the shards listed in a manifest (read from
    store filesystem `fs`, local when None)."""
    composition = Composition()
    for shard in shards:
        composition.merge(shard_composition(version_dir, shard, fs))
    return composition


def shard_composition(version_dir: str, shard: ShardEntry, fs: Any = None) -> Composition:
    """Return the composition statistics of one shard (`Composition.merge` adds them up:
    the data job counts its shards in tasks, `roleforge` commands here)."""
    counter = CompositionCounter()
    rows = 0
    # Counted a few big batches at a time: every sum is additive, and the counter's cost
    # is mostly per batch (a shard's own batches are ~250 rows).
    pending: list[pa.RecordBatch] = []
    for batch in iter_shard_batches(os.path.join(version_dir, shard.path), fs):
        rows += batch.num_rows
        pending.append(_media_counted(batch))  # no media byte is copied
        if rows % COUNT_ROWS < batch.num_rows:
            counter.add(pa.concat_batches(pending))
            pending = []
    if pending:
        counter.add(pa.concat_batches(pending))
    if rows != shard.rows:
        raise ValueError(f"shard {shard.path} holds {rows} rows, manifest says {shard.rows}")
    return counter.composition


def ordered_splits(splits: set[str]) -> list[str]:
    """Return split names in train/validation/test order, then any others sorted."""
    return [s for s in SPLITS if s in splits] + sorted(splits - set(SPLITS))
