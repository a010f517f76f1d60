"""Rejected records: the fixed vocabulary of reasons and the one path they leave through."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

REASONS: dict[str, str] = {
    "invalid_json": "the line or file is not valid JSON",
    "invalid_utf8": "the bytes are not valid UTF-8",
    "wrong_types": "a field has the wrong type or a required field is missing",
    "empty_messages": "the conversation has no messages",
    "no_assistant_turn": "no turn is spoken by the character",
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
    "unknown_character": "the record names a character the characters file lacks",
    "augment_error": "an augmentation op raised on this record",
    "stage_error": "a pipeline stage raised on this record",
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


class QuarantineWriter:
    """Appends quarantine entries to `<store>/<name>/quarantine/<run_id>.jsonl`."""

    def __init__(self, path: str):
        self.path = path
        self.counts: Counter[str] = Counter()
        self._file = None

    def write(self, entry: QuarantineEntry) -> None:
        if self._file is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(entry.to_dict(), ensure_ascii=False) + "\n")
        self.counts[entry.reason] += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
