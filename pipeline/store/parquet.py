"""Reading one Parquet file (a path, an open file or bytes) whole, without `pyarrow.dataset`.

`pq.read_table` reads through `pyarrow.dataset` (a `ParquetDataset`, even for one file or a
buffer), whose scanner threads can outlive the interpreter: a process that read a two-row
file from a BytesIO with it and then exited aborted with "terminate called without an
active exception" (exit 134) in 7 of 20 runs here (from an Arrow buffer, 2 of 30), and in
none of 30 through `ParquetFile` (apache/arrow#34314, and #50482 for a hang at exit, both
open). A command that read a memo or the record cache index that way could fail after its
work was done. `ParquetFile.read` decodes the file with the same reader into the same
table, schema metadata included.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def read_parquet(
    source: Any,
    columns: list[str] | None = None,
    *,
    memory_map: bool = False,
    filesystem: Any = None,
) -> pa.Table:
    """Return the table in `source` (a path, on `filesystem` when given; a readable file;
    or bytes), only `columns` when given; memory-mapped where `memory_map` (the table
    keeps the map open as long as it lives)."""
    import pyarrow.parquet as pq  # here: importing this module must not load Parquet

    if isinstance(source, bytes | bytearray | memoryview):
        source = pa.BufferReader(source)
    parquet = pq.ParquetFile(source, memory_map=memory_map, filesystem=filesystem)
    return parquet.read(columns=columns)
