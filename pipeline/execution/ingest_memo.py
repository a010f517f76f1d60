"""What an ingest task keeps of a JSON lines source it read, so that the next run of the
same source reads only the lines appended since (docs/ARCHITECTURE.md, "The data flow").

`cache/ingest/<key>.parquet` holds, for one source that is one UTF-8 JSON lines file, the
ingest keys of its records (`passes.KEYS_SCHEMA` but where they lie: those parts are gone
with the run's staging) and their near-duplicate signatures, and in its metadata the
file's size, the sha256 of those bytes, its line count, the format it was read in, what
its reader rejected and counted, and the pins of the media its records name. The key
covers everything else that decides what the reader makes of a line: the file's place,
the source's settings, the limits, the split and near-duplicate settings, the code and
the characters files.

A later task uses a memo only when the file's first `size` bytes still have its sha256
(the file only grew), those bytes end a line, and every pinned media file still has its
pin; it then reads from byte `size` on and the memo stands for the rest. Otherwise it
reads the whole file, as without a memo. A record of the memo that the record pass must
see again (its cache key missed: it moved split) is read back alone, by its line
(`LinesFrom.only`). Like everything under cache/, deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.readers import LinesFrom
from pipeline.readers.encoding import UTF8, sniff_encoding
from pipeline.readers.files import sniff_kind
from pipeline.record.ids import canonical_json
from pipeline.record.rejection import QuarantineEntry
from pipeline.store.parquet import read_parquet

log = logging.getLogger(__name__)

_META_KEY = b"roleforge.ingest_memo"
# The near-duplicate signatures (several rows per record), as an Arrow IPC stream.
_SIGNATURES_KEY = b"roleforge.signatures"
_CHUNK = 1 << 20


def memo_key(parts: dict[str, Any]) -> str:
    """Return the file name stem of the memo of a source read under `parts` (what decides
    the reader's output besides the file's bytes)."""
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


@dataclass
class IngestMemo:
    """One source file's ingest, as kept: its keys and signatures, and the facts above."""

    size: int
    sha256: str
    lines: int
    detected: str | None
    records_in: int
    quarantine: list[QuarantineEntry]
    unmapped: dict[str, int]
    media: list[dict[str, Any]]  # InputFile pins (model_dump) of the media its records name
    keys: pa.Table  # KEYS_SCHEMA columns but part and row
    signatures: pa.Table | None = None  # SIGNATURE_SCHEMA rows, aligned with `keys`

    def lines_from(self) -> LinesFrom:
        """Return where a read of the grown file goes on from."""
        return LinesFrom(offset=self.size, line=self.lines, detected=self.detected)

    def to_bytes(self) -> bytes:
        import pyarrow.parquet as pq

        meta = {
            "size": self.size,
            "sha256": self.sha256,
            "lines": self.lines,
            "detected": self.detected,
            "records_in": self.records_in,
            "quarantine": [e.to_dict() for e in self.quarantine],
            "unmapped": self.unmapped,
            "media": self.media,
        }
        metadata = {_META_KEY: json.dumps(meta).encode("utf-8")}
        if self.signatures is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, self.signatures.schema) as writer:
                writer.write_table(self.signatures)
            metadata[_SIGNATURES_KEY] = sink.getvalue().to_pybytes()
        table = self.keys.replace_schema_metadata(metadata)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> IngestMemo:
        table = read_parquet(data)
        metadata = table.schema.metadata or {}
        meta = json.loads(metadata[_META_KEY])
        signatures = None
        if _SIGNATURES_KEY in metadata:
            signatures = pa.ipc.open_stream(metadata[_SIGNATURES_KEY]).read_all()
        return cls(
            size=meta["size"],
            sha256=meta["sha256"],
            lines=meta["lines"],
            detected=meta["detected"],
            records_in=meta["records_in"],
            quarantine=[QuarantineEntry(**e) for e in meta["quarantine"]],
            unmapped=dict(meta["unmapped"]),
            media=list(meta["media"]),
            keys=table.replace_schema_metadata(None),
            signatures=signatures,
        )


def load_memo(path: str, fs: Any) -> IngestMemo | None:
    """Return the memo at `path`, None when there is none or it does not read (the file is
    then read whole: a memo costs reading, never a wrong record)."""
    try:
        return IngestMemo.from_bytes(fs.read_bytes(path))
    except FileNotFoundError:
        return None
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException) as exc:
        log.warning("ingest memo %s is unreadable, the file is read whole: %s", path, exc)
        return None


@dataclass(frozen=True)
class FilePrefix:
    """What a source file holds now: its size, and the sha256 of its first `prefix` bytes
    (None when it is shorter) and of all of it."""

    size: int
    prefix_sha256: str | None
    sha256: str | None  # None: not hashed (`file_prefix(digest=False)`)
    lines: int  # newlines in the whole file
    ends_line: bool  # its last byte is a newline (or it is empty)
    prefix_ends_line: bool
    # offset -> newlines before it, for each of `file_prefix`'s `marks` the file reaches.
    lines_at: dict[int, int] = field(default_factory=dict)


def file_prefix(
    location: str, prefix: int, source_fs: Any, marks: Iterable[int] = (), digest: bool = True
) -> FilePrefix:
    """Read the file at `location` once: hash all of it and its first `prefix` bytes
    (unless not `digest`), and count the newlines before each offset of `marks` (where the
    ranges of a file split between ingest tasks begin)."""
    h = hashlib.sha256()
    stops = sorted({prefix, *marks})
    at: dict[int, tuple[str | None, int, bytes]] = {0: (h.hexdigest(), 0, b"\n")}
    read = 0
    lines = 0
    last = b"\n"
    with source_fs.open(location) as f:
        for stop in [*stops, None]:
            while stop is None or read < stop:
                chunk = f.read(_CHUNK if stop is None else min(_CHUNK, stop - read))
                if not chunk:
                    break
                if digest:
                    h.update(chunk)
                lines += chunk.count(b"\n")
                read += len(chunk)
                last = chunk[-1:]
            if stop is not None and read == stop:
                at[stop] = (h.copy().hexdigest() if digest else None, lines, last)
    prefix_sha256, _, before_prefix = at.get(prefix, (None, 0, b"\n"))
    return FilePrefix(
        size=read,
        prefix_sha256=prefix_sha256,
        sha256=h.hexdigest() if digest else None,
        lines=lines,
        ends_line=last == b"\n",
        prefix_ends_line=before_prefix == b"\n",
        lines_at={m: at[m][1] for m in marks if m in at},
    )


def memo_size(path: str, fs: Any) -> int | None:
    """Return the file size a memo stands for, reading its footer only (None: no memo)."""
    import pyarrow.parquet as pq

    try:
        with fs.open_input(path) as source:
            meta = pq.read_schema(source).metadata or {}
        return int(json.loads(meta[_META_KEY])["size"])
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None


def usable_memo(
    memo: IngestMemo | None, location: str, now: FilePrefix, media_hold: Any, source_fs: Any
) -> IngestMemo | None:
    """Return `memo` when the file at `location` (hashed as `now`) only grew since: its
    first `memo.size` bytes have the memo's sha256 and end a line, it is still read as
    UTF-8 JSON lines, and `media_hold(pins)` says every media pin holds; else None."""
    if memo is None:
        return None
    if now.prefix_sha256 != memo.sha256 or not now.prefix_ends_line:
        return None
    if not is_json_lines(location, source_fs) or sniff_kind(location, source_fs) != "jsonl":
        return None
    return memo if media_hold(memo.media) else None


def is_json_lines(location: str, source_fs: Any) -> bool:
    """Return whether the file is UTF-8 text (what byte offsets into its lines assume)."""
    with source_fs.open(location) as f:
        return sniff_encoding(f.read(8)) == UTF8


@dataclass
class MemoRead:
    """One ingest task's use of its source file's memo: the file as it is now, and the
    memo that stands for its first bytes (None: the file is read whole)."""

    path: str  # the memo file
    location: str  # the source file
    now: FilePrefix
    old: IngestMemo | None

    @classmethod
    def open(cls, path: str, location: str, fs: Any, source_fs: Any, media_hold: Any) -> MemoRead:
        """Hash the source file and judge its memo (`usable_memo`)."""
        memo = load_memo(path, fs)
        now = file_prefix(location, memo.size if memo is not None else 0, source_fs)
        return cls(path, location, now, usable_memo(memo, location, now, media_hold, source_fs))

    def lines_from(self) -> dict[str, LinesFrom] | None:
        """Return where the reader goes on from in the file (None: its start)."""
        return {self.location: self.old.lines_from()} if self.old is not None else None

    def keep(self, memo: IngestMemo, fs: Any, source_fs: Any) -> None:
        """Write `memo` (the file as read now) for the next run, unless the file cannot be
        read from a byte offset again (its last line is not ended, it is no UTF-8 JSON
        lines, its format reads the file as one record) or it changed while it was read.
        A memo that cannot be written costs the next run a whole read, not this run."""
        if not self.now.ends_line or memo.detected == "sillytavern":
            return
        if source_fs.size(self.location) != self.now.size:
            return  # written to meanwhile: what was read is not what was hashed
        if not is_json_lines(self.location, source_fs):
            return
        if sniff_kind(self.location, source_fs) != "jsonl":
            return
        try:
            fs.write_bytes(self.path, memo.to_bytes())
        except OSError as exc:
            log.warning("ingest memo %s could not be written: %s", self.path, exc)
