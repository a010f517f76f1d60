"""The quarantine file of a run: rejected records appended as JSON lines, fsynced on close."""

from __future__ import annotations

import json
import os
from collections import Counter

from pipeline.record.rejection import QuarantineEntry


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
