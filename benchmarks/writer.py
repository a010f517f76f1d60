"""Shard-writing speed of the pipeline's writer against a bare pyarrow write of the same rows."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bare_write(table: pa.Table, path: Path, fsync: bool) -> float:
    """Return the seconds `pa.ipc.new_file(...).write_table(table)` takes (plus fsync if asked)."""
    started = time.perf_counter()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    if fsync:
        _fsync(path)
    return time.perf_counter() - started


def _bare_table(paths: list[str]) -> pa.Table:
    """Return the rows of the part files as one table of the published schema (memory-mapped)."""
    from pipeline.record.schema import RECORD_SCHEMA
    from pipeline.store.staging import read_part

    table = pa.concat_tables([read_part(p).select(RECORD_SCHEMA.names) for p in paths])
    return pa.Table.from_arrays(table.columns, schema=RECORD_SCHEMA)


def writer_vs_pyarrow(
    parts: Any, index: pa.Table, folder: Path, reps: int, shard_size: int = 256_000_000
) -> tuple[list[float], dict[str, Any]]:
    """Return per-repetition ratios (our MB/s / bare MB/s) and the figures behind them.

    Ours is `pipeline.writer.ShardWriter.write(index, parts)`: what a run does after the
    augment stage (gather rows in id order from the memory-mapped parts, check invariants,
    write IPC shards, fsync, hash). Bare is one `pa.ipc.new_file` write of the same rows,
    read from the same parts, to the same disk, followed by an fsync: the same durability
    our commit needs. The write without fsync is recorded too. The part files are read once
    before timing (page cache warm for both); each side maps them afresh in every
    repetition (as a run does once), and the two sides alternate order.
    """
    from pipeline.store.fs import LocalFS
    from pipeline.store.staging import PartSet
    from pipeline.store.writer import ShardWriter

    paths = list(parts.paths)
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    folder.mkdir(parents=True, exist_ok=True)
    ratios, ours_rates, bare_rates, nofsync_rates = [], [], [], []
    rows = 0
    for rep in range(reps):
        out = folder / f"ours-{rep}"
        bare_path = folder / f"bare-{rep}.arrow"

        def ours(out: Path = out) -> tuple[float, int]:
            started = time.perf_counter()
            writer = ShardWriter(str(out), "arrow", shard_size, LocalFS())
            shards = writer.write(index, PartSet(paths))
            return time.perf_counter() - started, sum(s["bytes"] for s in shards)

        if rep % 2 == 0:
            ours_s, ours_bytes = ours()
            bare_s, rows = _timed_bare(paths, bare_path, fsync=True)
        else:
            bare_s, rows = _timed_bare(paths, bare_path, fsync=True)
            ours_s, ours_bytes = ours()
        bare_bytes = bare_path.stat().st_size
        bare_path.unlink()
        nofsync_s, _ = _timed_bare(paths, bare_path, fsync=False)
        bare_path.unlink()
        shutil.rmtree(out, ignore_errors=True)
        ours_rates.append(ours_bytes / ours_s / 1e6)
        bare_rates.append(bare_bytes / bare_s / 1e6)
        nofsync_rates.append(bare_bytes / nofsync_s / 1e6)
        ratios.append(ours_rates[-1] / bare_rates[-1])
    detail = {
        "mb": bare_bytes / 1e6,
        "rows": rows,
        "ours_mb_s": _median(ours_rates),
        "bare_mb_s": _median(bare_rates),
        "bare_nofsync_mb_s": _median(nofsync_rates),
        "vs_bare_without_fsync": _median(
            [o / n for o, n in zip(ours_rates, nofsync_rates, strict=True)]
        ),
    }
    return ratios, detail


def _timed_bare(paths: list[str], path: Path, fsync: bool) -> tuple[float, int]:
    """Return the seconds of mapping the parts and writing them bare, and the rows written."""
    started = time.perf_counter()
    table = _bare_table(paths)
    bare_write(table, path, fsync)
    return time.perf_counter() - started, table.num_rows


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)
