"""The per-record cache under `<store>/<name>/cache/`: what the record pass made of each
record, kept so that a rerun computes only the records whose key it has not seen.

- `parts/<sha256>.arrow`: Arrow IPC files of record-pass outputs (originals followed by
  their variants), written by the tasks; the name is the sha256 of the keys of the records
  they hold, so a retried task rewrites the same file and two runs never collide.
- `index/<run_id>.parquet`: what one run added, one row per output row (key, where it lies,
  the recipe hash it was made under, the record's augmentation stats) or per rejected
  record (key and its quarantine entry), written once the run's parts are complete.

A version's shards are written from these parts; nothing in a version refers to them, so
deleting the folder is always safe (the next run recomputes every record once), and
`roleforge gc` leaves it alone. A part or index file that does not read costs a
recomputation of its records, never a wrong row.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import pyarrow as pa

log = logging.getLogger(__name__)

CACHE_INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("run_id", pa.string()),
        ("recipe_hash", pa.string()),
        ("id", pa.string()),
        ("parent_id", pa.string()),
        ("split", pa.string()),
        ("part", pa.string()),  # file name under parts/; null for a rejected record
        ("row", pa.int64()),
        ("nbytes", pa.int64()),
        ("stats", pa.string()),  # AugmentStats.to_dict() JSON, on an augmented original
        ("rejection", pa.string()),  # QuarantineEntry.to_dict() JSON, for a rejected record
    ]
)


class RecordCache:
    """One dataset's record cache: its part folder and its index files."""

    def __init__(self, dataset_root: str, fs: Any):
        self.folder = os.path.join(dataset_root, "cache")
        self.fs = fs
        self.parts_dir = os.path.join(self.folder, "parts")
        self.index_dir = os.path.join(self.folder, "index")

    def part_path(self, name: str) -> str:
        return os.path.join(self.parts_dir, name)

    def index(self) -> pa.Table:
        """Return every readable index row (index files that do not read are skipped)."""
        import pyarrow.parquet as pq

        tables = []
        for name in self.fs.listdir(self.index_dir):
            if not name.endswith(".parquet"):
                continue  # a temp file of a writer that crashed
            try:
                table = pq.read_table(
                    io.BytesIO(self.fs.read_bytes(os.path.join(self.index_dir, name)))
                )
                tables.append(table.select(CACHE_INDEX_SCHEMA.names).cast(CACHE_INDEX_SCHEMA))
            except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
                log.warning("cache index %s is unreadable, skipped: %s", name, exc)
        return pa.concat_tables(tables) if tables else CACHE_INDEX_SCHEMA.empty_table()

    def add(self, run_id: str, rows: pa.Table) -> None:
        """Publish the index rows of one run (whole or not at all)."""
        import pyarrow.parquet as pq

        if rows.num_rows == 0:
            return
        buffer = io.BytesIO()
        pq.write_table(rows.select(CACHE_INDEX_SCHEMA.names).cast(CACHE_INDEX_SCHEMA), buffer)
        self.fs.write_bytes(os.path.join(self.index_dir, f"{run_id}.parquet"), buffer.getvalue())
