"""Shard files of a version: their names, formats and the one way to read them back.

Two formats are published (docs/ARCHITECTURE.md: a version loads with datasets, pyarrow, polars,
duckdb, Ray and mlcroissant):
- `parquet` (the default): every tool reads it natively, and the HF features travel in the
  schema metadata, so `datasets` types `images` / `audios` as Image / Audio.
- `arrow`: Arrow IPC *stream* files, the format `datasets` itself writes and
  `datasets.Dataset.from_file` memory-maps. Versions may also hold IPC *file*
  format shards (what roleforge wrote at first); the reader below tells the two apart by the file's magic bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from pipeline.store.parquet import read_parquet

FORMATS = ("parquet", "arrow")
DEFAULT_FORMAT = "parquet"
EXTENSIONS = {"arrow": "arrow", "parquet": "parquet"}
_IPC_FILE_MAGIC = b"ARROW1"


def shard_name(split: str, index: int, count: int, fmt: str) -> str:
    """Return a shard's file name: `<split>-<i:05d>-of-<n:05d>.<ext>`."""
    return f"{split}-{index:05d}-of-{count:05d}.{EXTENSIONS[fmt]}"


def shard_format(path: str) -> str:
    """Return the format of a shard from its extension; raise ValueError for others."""
    for fmt, ext in EXTENSIONS.items():
        if path.endswith("." + ext):
            return fmt
    raise ValueError(f"not a shard file: {path}")


def read_shard_batches(
    path: str,
    columns: list[str] | None = None,
    parquet_columns: list[str] | None = None,
    batch_size: int = 4096,
    fs: Any = None,
) -> Iterator[pa.RecordBatch]:
    """Yield the record batches of a Parquet or Arrow IPC (stream or file) shard.

    `columns` selects top-level columns; `parquet_columns` may name leaves instead
    (`images.list.element.path`), so Parquet skips the media pages altogether. IPC shards
    are memory-mapped locally, so selecting light columns never touches the media bytes.
    `fs` is the store's filesystem (local when None); on an object store Parquet reads
    only the column chunks it needs (ranged GETs).
    """
    if shard_format(path) == "parquet":
        import pyarrow.parquet as pq

        with _open(path, fs) as source, pq.ParquetFile(source) as f:
            yield from f.iter_batches(columns=parquet_columns or columns, batch_size=batch_size)
        return
    with _open(path, fs) as source:
        reader = _ipc_reader(source)
        if isinstance(reader, pa.ipc.RecordBatchFileReader):
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            batches = iter(reader)
        for batch in batches:
            yield batch.select(columns) if columns is not None else batch


def _open(path: str, fs: Any) -> Any:
    """Return a random-access file over a shard: memory-mapped locally, else the store's."""
    return pa.memory_map(path, "r") if fs is None else fs.open_input(path)


def _ipc_reader(
    source: Any,
) -> pa.ipc.RecordBatchFileReader | pa.ipc.RecordBatchStreamReader:
    is_file = source.read(len(_IPC_FILE_MAGIC)) == _IPC_FILE_MAGIC
    source.seek(0)
    return pa.ipc.open_file(source) if is_file else pa.ipc.open_stream(source)


def read_shard(path: str, fs: Any = None) -> pa.Table:
    """Return a whole shard as a table (memory-mapped locally: the media are not copied;
    read whole from an object store `fs`)."""
    if shard_format(path) == "parquet":
        if fs is None or fs.is_local:
            return read_parquet(path, memory_map=True)
        return read_parquet(path, filesystem=fs.arrow)
    # The table keeps the map (or the file) open for as long as it lives.
    return _ipc_reader(_open(path, fs)).read_all()
