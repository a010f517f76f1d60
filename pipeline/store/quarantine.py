"""The quarantine file of a run: rejected records appended as JSON lines, fsynced on close.

The tasks that reject records write them to part files of the same lines under the run's
staging folder (`write_quarantine_part`); the driver appends the parts, in a fixed order,
to the run's one file, as it commits shards (docs/ARCHITECTURE.md, "Quarantine").

An object can't be appended to, so on an object store the lines go to a local temp file
and are uploaded whole on close (a run's quarantine file appears when the run ends)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pipeline.record.rejection import QuarantineEntry

log = logging.getLogger(__name__)


def _line(entry: QuarantineEntry) -> str:
    """Return one entry as the quarantine file's JSON line (the same for parts and file)."""
    return json.dumps(entry.to_dict(), ensure_ascii=False) + "\n"


class QuarantineWriter:
    """Appends quarantine entries to `<store>/<name>/quarantine/<run_id>.jsonl`."""

    def __init__(self, path: str, fs: Any = None):
        self.path = path
        self.fs = fs  # the store's filesystem; None: local
        self.counts: Counter[str] = Counter()
        self._file = None

    def write(self, entry: QuarantineEntry) -> None:
        if self._file is None:
            if self.fs is None or self.fs.is_local:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            else:
                self._file = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._file.write(_line(entry))
        self.counts[entry.reason] += 1

    def close(self, quiet: bool = False) -> None:
        """Flush, fsync and close the file; with `quiet`, an OSError doing so (a full disk
        while another error is already on its way) is logged instead of raised."""
        if self._file is None:
            return
        f, self._file = self._file, None
        try:
            f.flush()
            if self.fs is None or self.fs.is_local:
                os.fsync(f.fileno())
            else:
                f.seek(0)
                self.fs.write_bytes(self.path, f.read().encode("utf-8"))
        except OSError as exc:
            if not quiet:
                raise
            log.warning("quarantine file %s may be incomplete: %s", self.path, exc)
        finally:
            with contextlib.suppress(OSError):
                f.close()

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(quiet=exc_type is not None)  # never mask the error already on its way


@dataclass(frozen=True)
class QuarantinePart:
    """The quarantine part file a task wrote (under the run's staging folder) and how many
    of its entries there are per reason: what the task returns to the driver."""

    path: str
    reasons: dict[str, int]


def write_quarantine_part(
    path: str, entries: list[QuarantineEntry], fs: Any
) -> QuarantinePart | None:
    """Write a task's rejects whole to `path` (a retried task rewrites the same file); return
    the part, or None when there is nothing to write."""
    if not entries:
        return None
    text = "".join(_line(entry) for entry in entries)
    fs.write_bytes(path, text.encode("utf-8"))
    return QuarantinePart(path, dict(Counter(e.reason for e in entries)))


def read_quarantine_part(part: QuarantinePart, fs: Any) -> list[QuarantineEntry]:
    """Return the entries of a task's quarantine part, in the order the task wrote them."""
    text = fs.read_bytes(part.path).decode("utf-8")
    return [QuarantineEntry(**json.loads(line)) for line in text.splitlines() if line]
