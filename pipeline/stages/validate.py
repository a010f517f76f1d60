"""The invariants every canonical record must hold before it may enter a dataset."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

import pyarrow as pa

from pipeline.recipe import MediaLimits
from pipeline.record.media import (
    AudioInfo,
    ImageInfo,
    check_audio_length,
    check_image_size,
    decode_checked_audio,
    decode_checked_image,
    probe_audio,
    probe_image,
)
from pipeline.record.rejection import QuarantineEntry, RecordRejected, quarantine_entry
from pipeline.record.schema import (
    AUDIO_PLACEHOLDER,
    IMAGE_PLACEHOLDER,
    ROLES,
    count_placeholders,
)
from pipeline.stages.base import BatchContext, StageOutput

log = logging.getLogger(__name__)


def validate_record(
    record: dict[str, Any],
    limits: MediaLimits,
    decoded: dict[tuple[str, int], Any] | None = None,
    headers_only: bool = False,
    known: Mapping[int, ImageInfo | AudioInfo] | None = None,
    headers: BatchContext | None = None,
    decode: Collection[str] = ("images",),
) -> None:
    """Return None if the record holds every invariant; else raise RecordRejected with the reason.

    With `decoded`, the media kinds in `decode` are decoded and kept there by (kind,
    index). "images": in full, the pixels: the decode that proves an image is the one its
    augmentation uses (without it a cheaper probe proves it). "audios": plain PCM clips are
    read from the file their header was read from, their (samples, rate) kept (for the
    audio ops: a second open and header read cost ~0.1 ms a clip). `headers_only` holds the media to their limits from their headers
    without decoding their payloads: for an augmented variant, whose media are its
    validated original's bytes or what our own encoders just wrote. `known` holds, by the
    id of a media item's bytes object, what its encoder wrote (its size or length): such
    an item is held to the limits from that, without parsing its header again. `headers`,
    when given, keeps what was learnt of each media item's header (`BatchContext.note_media`):
    the size of an image our encoder wrote (no orientation tag) or that was decoded here
    (as viewed), the frames and rate of every clip.

    Checks, in order: well-typed messages, known roles, at least one message, system turns only
    before the dialogue, at least one assistant turn, no empty assistant turn, references (if any) a list of
    strings, placeholder counts equal to the media
    counts, and every media item within the byte limit and decoding within the pixel and
    duration limits. Pure: it touches no files, so it can run per record in any worker.
    """
    messages = _checked_messages(record.get("messages"))
    if not messages:
        raise RecordRejected("empty_messages", "the conversation has no messages")
    _check_turn_order(messages)
    if not any(m["role"] == "assistant" for m in messages):
        raise RecordRejected("no_assistant_turn", "no turn is spoken by the character")
    # An empty reply would be published as a training target that teaches silence.
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and not m["content"].strip():
            raise RecordRejected("empty_turn", f"messages[{i}] is an assistant turn with no text")
    references = record.get("references")
    if references is not None and not (
        isinstance(references, list) and all(isinstance(r, str) for r in references)
    ):
        raise RecordRejected("wrong_types", "references must be a list of strings or null")
    images = _checked_media(record.get("images"), "images", limits)
    audios = _checked_media(record.get("audios"), "audios", limits)
    for placeholder, media, what in (
        (IMAGE_PLACEHOLDER, images, "images"),
        (AUDIO_PLACEHOLDER, audios, "audios"),
    ):
        found = count_placeholders(messages, placeholder)
        if found != len(media):
            raise RecordRejected(
                "placeholder_mismatch",
                f"{found} {placeholder} placeholder(s) but {len(media)} {what}",
            )
    # Decoding is the expensive part, so it runs last, once the cheap invariants hold.
    known = known or {}
    for i, item in enumerate(images):
        try:
            info = known.get(id(item["bytes"]))
            if isinstance(info, ImageInfo):
                check_image_size(info.width, info.height, limits.max_image_pixels)
                if headers is not None:
                    # Written by our encoder from pixels of this size, with no orientation
                    # tag. An original's size is noted only from its decoded pixels: a
                    # header alone does not say whether an orientation turns it.
                    headers.note_media(item["bytes"], (info.height, info.width))
            elif decoded is None or "images" not in decode:
                probe_image(item["bytes"], limits.max_image_pixels, payload=not headers_only)
            else:
                pixels = decode_checked_image(item["bytes"], limits.max_image_pixels)
                decoded[("images", i)] = pixels
                if headers is not None:
                    # Decoded as viewed (orientation applied, an XMP-only one included):
                    # the size the token ledger would read from the header again.
                    headers.note_media(item["bytes"], pixels.shape[:2])
        except RecordRejected as exc:
            raise RecordRejected(exc.reason, f"images[{i}] {_label(item)}: {exc.message}") from None
    for i, item in enumerate(audios):
        try:
            info = known.get(id(item["bytes"]))
            if isinstance(info, AudioInfo):
                check_audio_length(info, limits.max_audio_seconds)
            elif decoded is not None and "audios" in decode:
                info, samples = decode_checked_audio(item["bytes"], limits.max_audio_seconds)
                if samples is not None:
                    decoded[("audios", i)] = samples
            else:
                info = probe_audio(
                    item["bytes"], limits.max_audio_seconds, payload=not headers_only
                )
            if headers is not None:
                headers.note_media(item["bytes"], (info.frames, info.samplerate))
        except RecordRejected as exc:
            raise RecordRejected(exc.reason, f"audios[{i}] {_label(item)}: {exc.message}") from None


def _checked_messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise RecordRejected(
            "wrong_types", f"messages must be a list, not {type(messages).__name__}"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RecordRejected("wrong_types", f"messages[{i}] must be an object")
        if not isinstance(m.get("content"), str):
            raise RecordRejected("wrong_types", f"messages[{i}].content must be a string")
        if m.get("name") is not None and not isinstance(m["name"], str):
            raise RecordRejected("wrong_types", f"messages[{i}].name must be a string or null")
        if m.get("role") not in ROLES:
            raise RecordRejected(
                "unknown_role", f"messages[{i}].role {m.get('role')!r} is not one of {ROLES}"
            )
    return messages


def _check_turn_order(messages: list[dict[str, Any]]) -> None:
    # System turns set the scene; one arriving mid-dialogue would be trained as if spoken.
    started = False
    for i, m in enumerate(messages):
        if m["role"] != "system":
            started = True
        elif started:
            raise RecordRejected(
                "bad_turn_order", f"messages[{i}] is a system turn after the dialogue started"
            )


def _checked_media(items: Any, what: str, limits: MediaLimits) -> list[dict[str, Any]]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise RecordRejected("wrong_types", f"{what} must be a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("bytes"), bytes | bytearray):
            raise RecordRejected("missing_media", f"{what}[{i}] has no bytes")
        if len(item["bytes"]) > limits.max_media_bytes:
            raise RecordRejected(
                "media_too_large",
                f"{what}[{i}] {_label(item)} has {len(item['bytes'])} bytes, "
                f"over the limit of {limits.max_media_bytes}",
            )
    return items


def _label(item: dict[str, Any]) -> str:
    return repr(item.get("path")) if item.get("path") else "(embedded)"


class ValidateStage:
    """Keeps records that hold every invariant of the canonical record; rejects the rest
    with a reason (docs/ARCHITECTURE.md, "The canonical record")."""

    name = "validate"

    def __init__(
        self,
        limits: MediaLimits,
        keep_pixels_of: frozenset[str] = frozenset(),
        keep_samples_of: frozenset[str] = frozenset(),
    ):
        self.limits = limits
        # Splits whose records a later stage decodes (the augmenters: train): their images
        # (image ops) are decoded in full here and the pixels left in the batch context;
        # their plain PCM clips' samples (audio ops) likewise.
        self.keep_pixels_of = keep_pixels_of
        self.keep_samples_of = keep_samples_of

    def rejection(
        self,
        record: dict[str, Any],
        decoded: dict[tuple[str, int], Any] | None = None,
        headers_only: bool = False,
        known: Mapping[int, ImageInfo | AudioInfo] | None = None,
        headers: BatchContext | None = None,
        decode: Collection[str] = ("images",),
    ) -> QuarantineEntry | None:
        """Return None for a valid record, else its quarantine entry (never raises);
        `decoded`, `headers_only`, `known`, `headers` and `decode` as in `validate_record`."""
        try:
            validate_record(record, self.limits, decoded, headers_only, known, headers, decode)
        except RecordRejected as exc:
            return quarantine_entry(self.name, record, exc.reason, exc.message)
        except Exception as exc:  # a bug or a library error on one record: quarantine it
            log.warning("%s: validation raised", record.get("source_ref"), exc_info=True)
            return quarantine_entry(
                self.name, record, "stage_error", f"{type(exc).__name__}: {exc}"
            )
        return None

    def process(self, batch: pa.Table, ctx: BatchContext) -> StageOutput:
        """Return the valid rows of `batch` and a quarantine entry per invalid one; the
        pixels (and samples) of kept records of `keep_pixels_of` splits go to `ctx.decoded`."""
        keep: list[int] = []
        out = StageOutput(batch)
        for i, record in enumerate(ctx.rows(batch)):
            split = record.get("split")
            decode = [
                kind
                for kind, splits in (
                    ("images", self.keep_pixels_of),
                    ("audios", self.keep_samples_of),
                )
                if split in splits
            ]
            decoded: dict[tuple[str, int], Any] | None = {} if decode else None
            entry = self.rejection(record, decoded, headers=ctx, decode=decode)
            if entry is not None:
                out.rejects.append(entry)
                out.stats[entry.reason] += 1
                continue
            keep.append(i)
            for (kind, index), media in (decoded or {}).items():
                ctx.decoded[(record["id"], kind, index)] = media
        if out.rejects:
            # Rows are taken from the batch, so the kept media buffers are never re-built.
            out.table = batch.take(pa.array(keep, pa.int64()))
        return out
