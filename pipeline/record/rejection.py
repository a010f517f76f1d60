"""Rejected records: the fixed vocabulary of reasons and the one path they leave through."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

REASONS: dict[str, str] = {
    "invalid_json": "the line or file is not valid JSON",
    "invalid_utf8": "the bytes are not valid UTF-8",
    "nesting_too_deep": "the JSON value is nested too deeply to parse safely",
    "duplicate_key": "a JSON object names one key twice: which value was meant is unknown",
    "wrong_types": "a field has the wrong type or a required field is missing",
    "empty_messages": "the conversation has no messages",
    "no_assistant_turn": "no turn is spoken by the character",
    "empty_turn": "an assistant turn is empty or whitespace only: no training target",
    "unknown_role": "a turn has a role that maps to no canonical role",
    "bad_turn_order": "turns do not alternate sensibly",
    "placeholder_mismatch": "the number of <image>/<audio> placeholders differs from the media",
    "missing_media": "a referenced media file does not exist",
    "media_outside_root": "a media path is absolute or escapes the corpus folder",
    "media_too_large": "a media item exceeds the byte limit",
    "corrupt_image": "an image does not decode",
    "image_too_large": "an image exceeds the pixel limit",
    "corrupt_audio": "an audio clip does not decode",
    "audio_too_long": "an audio clip exceeds the duration limit",
    "bad_data_uri": "a data URI or base64 payload does not decode",
    "unsupported_media": "the record carries a media kind roleforge does not carry (e.g. <video>)",
    "unknown_character": "the record names a character the characters file lacks",
    "augment_error": "an augmentation op raised on this record",
    "stage_error": "a pipeline stage raised on this record",
    # The quality stages (pipeline/stages/quality), each under its `quality:` policy.
    "ai_exposure": "the character says it is an AI or language model, or refuses as one",
    "speaker_leak": "a character turn writes the other speaker's lines",
    "unresolved_macro": "a {{char}}/{{user}}/<BOT>-style macro is left in a turn",
    "repetition": "the character repeats long n-grams within the conversation",
    "language_mismatch": "a turn is in another language than the conversation's",
    "near_duplicate": "a near-copy of a kept record (text, image or audio)",
    "too_many_tokens": "the conversation exceeds quality.max_tokens under the chat template",
    "contaminated": "character turns share long n-grams with a held-out file",
}


class RecordRejected(Exception):
    """Raised by any stage for one record that must be quarantined with `reason`."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown quarantine reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class QuarantineEntry:
    """One rejected record: which stage, why, and where it came from."""

    stage: str
    reason: str
    message: str
    source: str
    source_ref: str
    record_id: str | None = None
    excerpt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EXCERPT_CHARS = 200


def quarantine_entry(
    stage: str, record: dict[str, Any], reason: str, message: str
) -> QuarantineEntry:
    """Return the quarantine entry of one rejected record, with a short text excerpt."""
    messages = record.get("messages") or []
    excerpt = next((m.get("content") for m in messages if m.get("content")), None)
    return QuarantineEntry(
        stage=stage,
        reason=reason,
        message=message,
        source=record.get("source") or "",
        source_ref=record.get("source_ref") or "",
        record_id=record.get("id"),
        excerpt=excerpt[:EXCERPT_CHARS] if excerpt else None,
    )


class TooManyBadRecords(RuntimeError):
    """More records were quarantined than the recipe's max_bad_fraction allows."""

    def __init__(
        self, quarantined: int, total: int, limit: float, reasons: Mapping[str, int], path: str
    ):
        top = ", ".join(f"{r} ({n})" for r, n in Counter(reasons).most_common(5))
        super().__init__(
            f"{quarantined} of {total} records quarantined ({quarantined / max(total, 1):.1%}), "
            f"over max_bad_fraction {limit:.1%}; top reasons: {top}; see {path}"
        )
        self.quarantined = quarantined
        self.total = total
        self.report: Any = None  # what the command that raised it can show (ingest: its report)


def check_bad_fraction(
    quarantined: int, total: int, limit: float, reasons: Mapping[str, int], path: str
) -> None:
    """Raise TooManyBadRecords when `quarantined / total` exceeds `limit`."""
    if total and quarantined / total > limit:
        raise TooManyBadRecords(quarantined, total, limit, reasons, path)


class NothingToPublish(TooManyBadRecords):
    """No record is left to publish: every one was quarantined, or the sources held none."""

    def __init__(self, total: int, reasons: Mapping[str, int], path: str):
        RuntimeError.__init__(self)
        if total:
            top = ", ".join(f"{r} ({n})" for r, n in Counter(reasons).most_common(5))
            why = f"all {total} records were quarantined (top reasons: {top}; see {path})"
        else:
            why = "the sources hold no records"
        self.args = (f"{why}; nothing to publish",)
        self.quarantined = sum(reasons.values())
        self.total = total
        self.report = None


def check_something_to_publish(
    rows: int, total: int, reasons: Mapping[str, int], path: str
) -> None:
    """Raise NothingToPublish when no row is left (a version must hold at least one)."""
    if rows == 0:
        raise NothingToPublish(total, reasons, path)
