"""Variants of one canonical record: every op drawn from per-record generators, recorded, replayable."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

import numpy as np

from augmenters.audio import Clip, decode_audio, encode_flac, variant_audio_path
from augmenters.base import SKIPPED, Op
from augmenters.config import AugmentConfig
from augmenters.dialogue import DialogueState
from augmenters.image import (
    decode_image,
    encode_image,
    image_format,
    mentions_sides,
    swap_sides,
    variant_image_path,
)
from augmenters.protect import PLACEHOLDERS, protected_terms, protection_pattern
from augmenters.randomness import global_random_scope, record_generator
from augmenters.registry import build_ops
from pipeline.record.ids import canonical_json, record_seed, variant_id
from pipeline.record.schema import IMAGE_PLACEHOLDER

STAT_COUNTERS = (
    "variants",
    "empty_variants",
    "flip_guard_skipped",
    "flip_guard_swapped",
    "text_skipped",
    "failed_variants",
)


def empty_stats() -> dict[str, Any]:
    """Return a stats dict with every counter at zero."""
    return {**dict.fromkeys(STAT_COUNTERS, 0), "ops": {}}


def merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Return the sum of two stats dicts (nested counters added key by key)."""
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict):
            out[key] = merge_stats(out.get(key) or {}, value)
        else:
            out[key] = out.get(key, 0) + value
    return out


def _count(stats: dict[str, Any], op: Op, outcome: str) -> None:
    slot = stats["ops"].setdefault(f"{op.modality}:{op.name}", {"applied": 0, "skipped": 0})
    slot[outcome] += 1


def image_owners(messages: list[dict[str, Any]]) -> list[int]:
    """Return, for each image in order, the index of the message holding its placeholder."""
    return [i for i, m in enumerate(messages) for _ in range(m["content"].count(IMAGE_PLACEHOLDER))]


def image_scope(messages: list[dict[str, Any]], k: int) -> tuple[list[int], bool]:
    """Return (turns that refer to image k, whether its turn also holds another image).

    A turn refers to an image from the turn holding its placeholder up to the next turn
    that brings any other medium: the talk about a picture follows the picture.
    """
    owners = image_owners(messages)
    start = owners[k]
    stop = next(
        (
            i
            for i in range(start + 1, len(messages))
            if any(ph in messages[i]["content"] for ph in PLACEHOLDERS)
        ),
        len(messages),
    )
    return list(range(start, stop)), owners.count(start) > 1


class _VariantBuilder:
    """One variant under construction: the state, the decoded media it changed, and its op log."""

    def __init__(
        self,
        record: dict[str, Any],
        mono_audio: bool,
        decoded: dict[tuple[str, int], Any] | None = None,
    ) -> None:
        self.state = DialogueState(
            messages=[dict(m) for m in record["messages"]],
            images=list(record.get("images") or []),
            audios=list(record.get("audios") or []),
            character=record.get("character"),
        )
        self.mono_audio = mono_audio
        # Decoded media, and which of them an op changed (only those are encoded again).
        self.images: dict[int, np.ndarray] = {}
        self.audios: dict[int, Clip] = {}
        self.changed_images: set[int] = set()
        self.changed_audios: set[int] = set()
        self.log: list[dict[str, Any]] = []
        # Originals decoded once per record and shared by its copies (decoding again per
        # copy cost ~2 ms a record); keyed by the identity of the original's bytes object.
        self._decoded = {} if decoded is None else decoded

    def _original(self, kind: str, data: bytes, decode: Any) -> Any:
        key = (kind, id(data))
        if key not in self._decoded:
            self._decoded[key] = decode(data)
        return self._decoded[key]

    def record_op(self, op: Op, params: dict[str, Any]) -> None:
        self.log.append({"modality": op.modality, "op": op.name, "params": canonical_json(params)})

    def image(self, k: int) -> np.ndarray:
        if k not in self.images:
            pixels = self._original("image", self.state.images[k]["bytes"], decode_image)
            # A copy: ops may write into their input, and the original serves every copy.
            self.images[k] = pixels.copy()
        return self.images[k]

    def clip(self, k: int) -> Clip:
        if k not in self.audios:
            clip = self._original(
                "audio",
                self.state.audios[k]["bytes"],
                lambda data: decode_audio(data, mono=self.mono_audio),
            )
            self.audios[k] = dataclasses.replace(clip, samples=clip.samples.copy())
        return self.audios[k]

    # The apply half, shared by variants() and replay() so both produce the same bytes.
    def apply(self, op: Op, params: dict[str, Any]) -> None:
        if op.modality == "dialogue":
            self.state = op.apply(self.state, params)
        elif op.modality == "text":
            for i, text in params["turns"]:
                self.state.messages[i] = {
                    **self.state.messages[i],
                    "content": op.apply(self.state.messages[i]["content"], {"text": text}),
                }
        elif op.modality == "image":
            k = params["image"]
            self.images[k] = op.apply(self.image(k), params)
            self.changed_images.add(k)
            for i in params.get("swap_turns", ()):
                self.state.messages[i] = {
                    **self.state.messages[i],
                    "content": swap_sides(self.state.messages[i]["content"]),
                }
        else:
            k = params["clip"]
            self.audios[k] = op.apply(self.clip(k), params)
            self.changed_audios.add(k)
        self.record_op(op, params)

    def changed_media(self) -> None:
        """Encode the media an op changed back into the variant (originals stay byte-identical)."""
        for k in sorted(self.changed_images):
            original = self.state.images[k]
            fmt = image_format(original["bytes"])
            self.state.images[k] = {
                "bytes": encode_image(self.images[k], fmt),
                "path": variant_image_path(original.get("path"), fmt),
            }
        for k in sorted(self.changed_audios):
            original = self.state.audios[k]
            self.state.audios[k] = {
                "bytes": encode_flac(self.audios[k]),
                "path": variant_audio_path(original.get("path")),
            }
        self.images.clear()
        self.audios.clear()
        self.changed_images.clear()
        self.changed_audios.clear()


class RecordAugmenter:
    """Makes the augmented variants of canonical records for one recipe; cheap to build and to pickle.

    The ops (and any library objects or models behind them) are built on first use in
    the process that runs them, and cached there.
    """

    def __init__(self, augment: AugmentConfig, seed: int, recipe_hash: str) -> None:
        self.augment = augment
        self.seed = int(seed)
        self.recipe_hash = recipe_hash
        self._ops: dict[str, list[Op]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ops": None}

    @property
    def ops(self) -> dict[str, list[Op]]:
        """Return the recipe's ops per modality, built once per process."""
        if self._ops is None:
            self._ops = build_ops(self.augment)
        return self._ops

    @property
    def active(self) -> bool:
        """True when the recipe asks for variants and lists at least one op."""
        return self.augment.copies > 0 and any(self.ops.values())

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Return a context for many `variants()` calls: one save/restore of the global RNG states.

        nlpaug and audiomentations run under seeded global states; saving and restoring
        numpy's costs ~150 us, which `variants()` otherwise pays per record. Inside the
        context the ambient states are restored once, on exit (also after an exception).
        """
        return global_random_scope()

    def _rng(self, record_id: str, copy: int, modality: str) -> np.random.Generator:
        # One modality's generator is used up before the next is asked for (see record_generator).
        return record_generator(record_seed(self.seed, record_id, copy, modality))

    def variants(self, record: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Return (variants, stats) for one canonical record; variants in which no op applied are counted, not returned."""
        stats = empty_stats()
        out: list[dict[str, Any]] = []
        if not self.active:
            return out, stats
        decoded: dict[tuple[str, int], Any] = {}
        with global_random_scope():
            for copy in range(self.augment.copies):
                builder = self._draw_variant(record, copy, stats, decoded)
                if not builder.log:
                    stats["empty_variants"] += 1
                    continue
                builder.changed_media()
                out.append(self._assemble(record, copy, builder))
                stats["variants"] += 1
        return out, stats

    def _draw_variant(
        self,
        record: dict[str, Any],
        copy: int,
        stats: dict[str, Any],
        decoded: dict[tuple[str, int], Any],
    ) -> _VariantBuilder:
        builder = _VariantBuilder(
            record, mono_audio=self.augment.audio_channels == "mono", decoded=decoded
        )
        rid = record["id"]

        ops = self.ops
        # A generator costs ~25 us to seed; modalities without ops never make one.
        rng = self._rng(rid, copy, "dialogue") if ops["dialogue"] else None
        for op in ops["dialogue"]:
            if rng.random() >= op.p:
                continue
            params = op.draw(rng, builder.state)
            if params is SKIPPED:
                _count(stats, op, "skipped")
            elif params is not None:
                builder.apply(op, {"step": op.step, **params})
                _count(stats, op, "applied")

        rng = self._rng(rid, copy, "image") if ops["image"] else None
        for k in range(len(builder.state.images) if rng else 0):
            for op in ops["image"]:
                if rng.random() >= op.p:
                    continue
                guard: dict[str, Any] = {}
                if op.is_horizontal_flip:
                    guard = self._flip_guard(builder.state.messages, k, stats)
                    if guard.get("skip"):
                        _count(stats, op, "skipped")
                        continue
                params = op.draw(rng, builder.image(k))
                builder.apply(op, {"step": op.step, "image": k, **params, **guard})
                _count(stats, op, "applied")

        rng = self._rng(rid, copy, "text") if ops["text"] else None
        pattern = protection_pattern(protected_terms(builder.state.character)) if rng else None
        for op in ops["text"]:
            turns = []
            for i, message in enumerate(builder.state.messages):
                if message["role"] not in op.roles or rng.random() >= op.p:
                    continue
                params = op.draw(rng, message["content"], pattern)
                if params is SKIPPED:
                    stats["text_skipped"] += 1
                    _count(stats, op, "skipped")
                elif params is not None:
                    turns.append([i, params["text"]])
            if turns:
                builder.apply(op, {"step": op.step, "turns": turns})
                _count(stats, op, "applied")

        rng = self._rng(rid, copy, "audio") if ops["audio"] else None
        for k in range(len(builder.state.audios) if rng else 0):
            for op in ops["audio"]:
                if rng.random() >= op.p:
                    continue
                params = op.draw(rng, builder.clip(k))
                if params is None:
                    continue
                builder.apply(op, {"step": op.step, "clip": k, **params})
                _count(stats, op, "applied")
        return builder

    def _flip_guard(
        self, messages: list[dict[str, Any]], k: int, stats: dict[str, Any]
    ) -> dict[str, Any]:
        """Return {} to flip freely, {"skip": True}, or {"swap_turns": [...]} when left/right are mentioned."""
        scope, shared = image_scope(messages, k)
        mentioned = [i for i in scope if mentions_sides(messages[i]["content"])]
        if not mentioned:
            return {}
        # A turn showing two images cannot say which one its "left" is about: never swap there.
        if self.augment.flip_guard == "skip" or shared:
            stats["flip_guard_skipped"] += 1
            return {"skip": True}
        stats["flip_guard_swapped"] += 1
        return {"swap_turns": mentioned}

    def _assemble(
        self, record: dict[str, Any], copy: int, builder: _VariantBuilder
    ) -> dict[str, Any]:
        state = builder.state
        return {
            **record,
            "id": variant_id(record["id"], self.recipe_hash, copy),
            "parent_id": record["id"],
            "messages": state.messages,
            "images": state.images,
            "audios": state.audios,
            "augmentation": {
                "recipe_hash": self.recipe_hash,
                "copy": copy,
                "seed": record_seed(self.seed, record["id"], copy, "record"),
                "ops": builder.log,
            },
        }

    def replay(self, record: dict[str, Any], augmentation: dict[str, Any]) -> dict[str, Any]:
        """Return the variant of `record` that `augmentation` (as stored in a variant) describes, byte-identical."""
        if augmentation["recipe_hash"] != self.recipe_hash:
            raise ValueError(
                f"augmentation was made by recipe {augmentation['recipe_hash'][:12]}, not {self.recipe_hash[:12]}"
            )
        builder = _VariantBuilder(record, mono_audio=self.augment.audio_channels == "mono")
        with global_random_scope():
            for entry in augmentation["ops"]:
                params = json.loads(entry["params"])
                op = self.ops[entry["modality"]][params["step"]]
                if op.name != entry["op"]:
                    raise ValueError(
                        f"op {entry['op']} at {entry['modality']}[{params['step']}] is {op.name} in this recipe"
                    )
                builder.apply(op, params)
            builder.changed_media()
        return self._assemble(record, augmentation["copy"], builder)
