"""Variants of one canonical record: every op drawn from per-record generators, recorded, replayable."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from augmenters.audio import Clip, clip_of, decode_clip, encode_flac, variant_audio_path
from augmenters.base import SKIPPED, Op
from augmenters.config import AugmentConfig
from augmenters.dialogue import DialogueState
from augmenters.image import (
    decode_image,
    encode_image,
    image_format,
    mentions_sides,
    swap_sides,
    variant_image_format,
    variant_image_path,
)
from augmenters.protect import PLACEHOLDERS, protected_terms, protection_pattern
from augmenters.randomness import global_random_scope, record_generator
from augmenters.registry import build_ops
from augmenters.stats import AugmentStats
from pipeline.record.ids import canonical_json, record_seed, variant_id
from pipeline.record.media import AudioInfo, ImageInfo
from pipeline.record.schema import IMAGE_PLACEHOLDER


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


def _character_protection(character: dict[str, Any] | None) -> Any:
    return protection_pattern(protected_terms(character))


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
        # Items whose array above is (a view of) the record's decoded original, shared by
        # its copies: read by ops that keep their input, copied before any other op runs.
        self._shared: set[tuple[str, int]] = set()
        self.log: list[dict[str, Any]] = []
        # Originals decoded once per record and shared by its copies (decoding again per
        # copy cost ~2 ms a record); keyed by the identity of the original's bytes object
        # (and the character's protection pattern, by the identity of the character).
        self._decoded = {} if decoded is None else decoded

    def _original(self, kind: str, data: Any, decode: Any) -> Any:
        key = (kind, id(data))
        if key not in self._decoded:
            self._decoded[key] = decode(data)
        return self._decoded[key]

    def protection(self) -> Any:
        """Return the protection pattern of the variant's character (None when nothing is
        protected), made once per record: its copies share the character, and the terms and
        their regex cost ~25 us a variant."""
        return self._original("protection", self.state.character, _character_protection)

    def record_op(self, op: Op, params: dict[str, Any]) -> None:
        self.log.append({"modality": op.modality, "op": op.name, "params": canonical_json(params)})

    def image(self, k: int, op: Op | None = None) -> np.ndarray:
        """Return image k's pixels as the variant has them, for `op` to read (or write into,
        unless it keeps its input)."""
        if k not in self.images:
            self.images[k] = self._original("image", self.state.images[k]["bytes"], decode_image)
            self._shared.add(("image", k))
        if ("image", k) in self._shared and not (op is not None and op.keeps_input):
            # A copy: the op may write into its input, and the original serves every copy.
            self.images[k] = self.images[k].copy()
            self._shared.discard(("image", k))
        return self.images[k]

    def clip(self, k: int, op: Op | None = None) -> Clip:
        """Return clip k as the variant has it; `op` as for `image`."""
        if k not in self.audios:
            self.audios[k] = self._original(
                "audio", self.state.audios[k]["bytes"], self._decode_clip
            )
            self._shared.add(("audio", k))
        if ("audio", k) in self._shared and not (op is not None and op.keeps_input):
            clip = self.audios[k]
            self.audios[k] = dataclasses.replace(clip, samples=clip.samples.copy())
            self._shared.discard(("audio", k))
        return self.audios[k]

    def _decode_clip(self, data: bytes) -> Clip:
        samples = self._decoded.get(("samples", id(data)))
        if samples is None:
            clip = decode_clip(data, mono=self.mono_audio)
        else:  # validation read them from the file it read the header of
            clip = clip_of(*samples, mono=self.mono_audio)
        # Shared by the record's copies: an op that wrote into it would raise, not leak.
        clip.samples.flags.writeable = False
        return clip

    def _owned(self, kind: str, k: int, before: np.ndarray, after: np.ndarray) -> None:
        """Note whether an op's output `after` still shares memory with a shared input."""
        if (kind, k) in self._shared and not np.may_share_memory(before, after):
            self._shared.discard((kind, k))

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
            before = self.image(k, op)
            self.images[k] = op.apply(before, params)
            self._owned("image", k, before, self.images[k])
            self.changed_images.add(k)
            for i in params.get("swap_turns", ()):
                self.state.messages[i] = {
                    **self.state.messages[i],
                    "content": swap_sides(self.state.messages[i]["content"]),
                }
        else:
            k = params["clip"]
            before = self.clip(k, op)
            self.audios[k] = op.apply(before, params)
            self._owned("audio", k, before.samples, self.audios[k].samples)
            self.changed_audios.add(k)
        self.record_op(op, params)

    def changed_media(self, encoded: dict[int, ImageInfo | AudioInfo] | None = None) -> None:
        """Encode the media an op changed back into the variant (originals stay byte-identical);
        into `encoded`, what each new item holds, by the id of its bytes object."""
        for k in sorted(self.changed_images):
            original, pixels = self.state.images[k], self.images[k]
            fmt = image_format(original["bytes"])
            data = encode_image(pixels, fmt)
            self.state.images[k] = {
                "bytes": data,
                "path": variant_image_path(original.get("path"), fmt),
            }
            if encoded is not None:
                height, width = pixels.shape[:2]
                encoded[id(data)] = ImageInfo(variant_image_format(fmt).upper(), width, height)
        for k in sorted(self.changed_audios):
            original, clip = self.state.audios[k], self.audios[k]
            # The variant's own samples (no sibling or original shares them) end here.
            owned = ("audio", k) not in self._shared and clip.samples.flags.writeable
            data = encode_flac(clip, scratch=owned)
            self.state.audios[k] = {
                "bytes": data,
                "path": variant_audio_path(original.get("path")),
            }
            if encoded is not None:
                samples = clip.samples
                channels = 1 if samples.ndim == 1 else samples.shape[0]
                encoded[id(data)] = AudioInfo("FLAC", clip.sample_rate, channels, samples.shape[-1])
        self.images.clear()
        self.audios.clear()
        self.changed_images.clear()
        self.changed_audios.clear()
        self._shared.clear()


class _Lane:
    """How one modality's ops meet a variant: which targets each op draws for, and in what order.

    `groups` yields (op, targets) in draw order; each target gets its own `p` roll and
    `draw`, and a group's draws are applied (`applied` makes the recorded params) before
    the next group is drawn, so later ops see what earlier ones did.
    """

    def __init__(self, builder: _VariantBuilder, stats: AugmentStats, flip_guard: str) -> None:
        self.builder = builder
        self.stats = stats
        self.flip_guard = flip_guard

    def groups(self, ops: list[Op]) -> Iterator[tuple[Op, list[int]]]:
        raise NotImplementedError

    def draw(self, op: Any, target: int, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def applied(self, op: Op, drawn: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Return the params to apply and record for a group's draws: one entry per draw."""
        return [{"step": op.step, **params} for _, params in drawn]


class _DialogueLane(_Lane):
    """Each op draws once, on the whole conversation."""

    def groups(self, ops: list[Op]) -> Iterator[tuple[Op, list[int]]]:
        for op in ops:
            yield op, [0]

    def draw(self, op: Any, target: int, rng: np.random.Generator) -> Any:
        return op.draw(rng, self.builder.state)


class _MediaLane(_Lane):
    """Item by item (each image or clip), every op in turn; the params name the item."""

    media: ClassVar[str]  # the DialogueState list the items are in
    target_key: ClassVar[str]  # the params key naming the item ("image": k)

    def groups(self, ops: list[Op]) -> Iterator[tuple[Op, list[int]]]:
        for k in range(len(getattr(self.builder.state, self.media))):
            for op in ops:
                yield op, [k]

    def applied(self, op: Op, drawn: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
        return [{"step": op.step, self.target_key: k, **params} for k, params in drawn]


class _ImageLane(_MediaLane):
    """A flip may be skipped, or swap left/right in the turns about its image."""

    media, target_key = "images", "image"

    def draw(self, op: Any, target: int, rng: np.random.Generator) -> Any:
        guard = self._flip_guard(target) if op.is_horizontal_flip else {}
        if guard.get("skip"):
            return SKIPPED
        return {**op.draw(rng, self.builder.image(target, op)), **guard}

    def _flip_guard(self, k: int) -> dict[str, Any]:
        """Return {} to flip freely, {"skip": True}, or {"swap_turns": [...]} when left/right are mentioned."""
        messages = self.builder.state.messages
        scope, shared = image_scope(messages, k)
        mentioned = [i for i in scope if mentions_sides(messages[i]["content"])]
        if not mentioned:
            return {}
        # A turn showing two images cannot say which one its "left" is about: never swap there.
        if self.flip_guard == "skip" or shared:
            self.stats.flip_guard_skipped += 1
            return {"skip": True}
        self.stats.flip_guard_swapped += 1
        return {"swap_turns": mentioned}


class _TextLane(_Lane):
    """Op by op, every turn of the op's roles; one op's rewritten turns are applied together."""

    def groups(self, ops: list[Op]) -> Iterator[tuple[Op, list[int]]]:
        self.pattern = self.builder.protection()
        for op in ops:
            messages = self.builder.state.messages
            yield op, [i for i, m in enumerate(messages) if m["role"] in op.roles]

    def draw(self, op: Any, target: int, rng: np.random.Generator) -> Any:
        params = op.draw(rng, self.builder.state.messages[target]["content"], self.pattern)
        if params is SKIPPED:
            self.stats.text_skipped += 1
        return params

    def applied(self, op: Op, drawn: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
        turns = [[i, params["text"]] for i, params in drawn]
        return [{"step": op.step, "turns": turns}] if turns else []


class _AudioLane(_MediaLane):
    media, target_key = "audios", "clip"

    def draw(self, op: Any, target: int, rng: np.random.Generator) -> Any:
        return op.draw(rng, self.builder.clip(target, op))


# The draw order: each modality's generator is used up before the next one's is made.
# Changing the order changes every variant.
LANES: dict[str, type[_Lane]] = {
    "dialogue": _DialogueLane,
    "image": _ImageLane,
    "text": _TextLane,
    "audio": _AudioLane,
}


# The ops of the augmenter (by its `_token`) whose copies this process last unpickled.
_BUILT: dict[str, dict[str, list[Op]]] = {}


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
        # Names this augmenter and its pickled copies: every task of a record pass gets its
        # own copy, and they share one build of the ops per process (`ops`).
        self._token = os.urandom(16).hex()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ops": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._shares_ops = True  # a copy: its ops may come from (and go to) `_BUILT`

    @property
    def ops(self) -> dict[str, list[Op]]:
        """Return the recipe's ops per modality, built once per process.

        A copy unpickled in a Ray worker (one per task) takes the ops the worker built for
        an earlier copy of the same augmenter: building them per task cost ~1-3 ms (nlpaug
        reads its keyboard model, albumentations validates its arguments), one task per
        ~26 records. Only the last augmenter's are kept, so a worker holds one set; a new
        augmenter (a new pass, a new recipe) builds its own, reading any file it names
        afresh. Ops keep no state between records (a record's variants are the same at
        any task size), so sharing them across tasks changes no variant. The augmenter
        itself (not a copy: the driver's) keeps its ops to itself, so they go with it.
        """
        if self._ops is None:
            token = getattr(self, "_token", None) if getattr(self, "_shares_ops", False) else None
            built = _BUILT.get(token) if token is not None else None
            if built is None:
                built = build_ops(self.augment)
                if token is not None:
                    _BUILT.clear()
                    _BUILT[token] = built
            self._ops = built
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

    def variants(
        self,
        record: dict[str, Any],
        decoded: dict[tuple[str, int], Any] | None = None,
        encoded: dict[int, ImageInfo | AudioInfo] | None = None,
    ) -> tuple[list[dict[str, Any]], AugmentStats]:
        """Return (variants, stats) for one canonical record; variants in which no op applied
        are counted, not returned. `decoded` may hold the record's media already decoded
        (validation's pixels, keyed ("image", id(bytes)), and a clip's (samples, rate) as
        `decode_audio` gives them, keyed ("samples", id(bytes))); they are never written into.
        `encoded`, when given, receives the size or length of every media item the variants'
        encoders wrote, keyed by the id of its bytes (validation holds them to the limits
        from that, instead of parsing what was just written)."""
        stats = AugmentStats()
        out: list[dict[str, Any]] = []
        if not self.active:
            return out, stats
        decoded = {} if decoded is None else decoded
        with global_random_scope():
            for copy in range(self.augment.copies):
                builder = self._draw_variant(record, copy, stats, decoded)
                if not builder.log:
                    stats.empty_variants += 1
                    continue
                builder.changed_media(encoded)
                out.append(self._assemble(record, copy, builder))
                stats.variants += 1
        return out, stats

    def _draw_variant(
        self,
        record: dict[str, Any],
        copy: int,
        stats: AugmentStats,
        decoded: dict[tuple[str, int], Any],
    ) -> _VariantBuilder:
        builder = _VariantBuilder(
            record, mono_audio=self.augment.audio_channels == "mono", decoded=decoded
        )
        for modality, lane_class in LANES.items():
            ops = self.ops[modality]
            if not ops:
                continue  # a generator costs ~25 us to seed; modalities without ops never make one
            rng = self._rng(record["id"], copy, modality)
            lane = lane_class(builder, stats, self.augment.flip_guard)
            for op, targets in lane.groups(ops):
                drawn = []
                for target in targets:
                    if rng.random() >= op.p:
                        continue
                    params = lane.draw(op, target, rng)
                    if params is SKIPPED:
                        stats.count(op.modality, op.name, "skipped")
                    elif params is not None:
                        drawn.append((target, params))
                for params in lane.applied(op, drawn):
                    builder.apply(op, params)
                    stats.count(op.modality, op.name, "applied")
        return builder

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
