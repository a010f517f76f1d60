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


def writer_vs_pyarrow(
    parts: Any, index: pa.Table, folder: Path, reps: int, shard_size: int = 256_000_000
) -> tuple[list[float], dict[str, Any]]:
    """Return per-repetition ratios (our MB/s / bare MB/s) and the figures behind them.

    Ours is `pipeline.writer.ShardWriter.write(index, parts)`: what a run does after the
    augment stage (gather rows in id order from the memory-mapped parts, check invariants,
    write IPC shards, fsync, hash). Bare is one `pa.ipc.new_file` write of the same rows,
    read from the same parts, to the same disk, followed by an fsync: the same durability
    our commit needs. The write without fsync is recorded too. Both sides alternate order.
    """
    from pipeline.schema import RECORD_SCHEMA
    from pipeline.staging import read_part
    from pipeline.storefs import LocalFS
    from pipeline.writer import ShardWriter

    table = pa.concat_tables([read_part(p).select(RECORD_SCHEMA.names) for p in parts.paths])
    table = pa.Table.from_arrays(table.columns, schema=RECORD_SCHEMA)
    folder.mkdir(parents=True, exist_ok=True)
    ratios, ours_rates, bare_rates, nofsync_rates = [], [], [], []
    for rep in range(reps):
        out = folder / f"ours-{rep}"
        bare_path = folder / f"bare-{rep}.arrow"

        def ours(out: Path = out) -> tuple[float, int]:
            started = time.perf_counter()
            shards = ShardWriter(str(out), "arrow", shard_size, LocalFS()).write(index, parts)
            return time.perf_counter() - started, sum(s["bytes"] for s in shards)

        if rep % 2 == 0:
            ours_s, ours_bytes = ours()
            bare_s = bare_write(table, bare_path, fsync=True)
        else:
            bare_s = bare_write(table, bare_path, fsync=True)
            ours_s, ours_bytes = ours()
        bare_bytes = bare_path.stat().st_size
        bare_path.unlink()
        nofsync_s = bare_write(table, bare_path, fsync=False)
        bare_path.unlink()
        shutil.rmtree(out, ignore_errors=True)
        ours_rates.append(ours_bytes / ours_s / 1e6)
        bare_rates.append(bare_bytes / bare_s / 1e6)
        nofsync_rates.append(bare_bytes / nofsync_s / 1e6)
        ratios.append(ours_rates[-1] / bare_rates[-1])
    detail = {
        "mb": table.nbytes / 1e6,
        "rows": table.num_rows,
        "ours_mb_s": _median(ours_rates),
        "bare_mb_s": _median(bare_rates),
        "bare_nofsync_mb_s": _median(nofsync_rates),
        "vs_bare_without_fsync": _median(
            [o / n for o, n in zip(ours_rates, nofsync_rates, strict=True)]
        ),
    }
    return ratios, detail


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)
