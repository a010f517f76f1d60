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


def bare_write(table: pa.Table, path: Path, fsync: bool, fmt: str = "parquet") -> float:
    """Return the seconds a bare pyarrow write of `table` in `fmt` takes (plus fsync if asked):
    `pq.write_table` with our writer's settings (no compression, no dictionary) for Parquet,
    `pa.ipc.new_stream` for Arrow."""
    started = time.perf_counter()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, str(path), compression="none", use_dictionary=False)
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
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
    parts: Any,
    index: pa.Table,
    folder: Path,
    reps: int,
    shard_size: int = 256_000_000,
    fmt: str = "parquet",
) -> tuple[list[float], dict[str, Any]]:
    """Return per-repetition ratios (our MB/s / bare MB/s) and the figures behind them.

    Ours is `pipeline.writer.ShardWriter.write(index, parts)`: what a run does after the
    augment stage (gather rows in id order from the memory-mapped parts, check invariants,
    write `fmt` shards, fsync, hash). Bare is one pyarrow write of the same rows in the same
    format (`bare_write`),
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
    ours_cpu, bare_cpu = [], []
    rows = 0
    for rep in range(reps):
        out = folder / f"ours-{rep}"
        bare_path = folder / f"bare-{rep}.{fmt}"

        def ours(out: Path = out) -> tuple[float, int]:
            started = time.perf_counter()
            writer = ShardWriter(str(out), fmt, shard_size, LocalFS())
            shards = writer.write(index, PartSet(paths))
            return time.perf_counter() - started, sum(s.bytes for s in shards)

        def bare(bare_path: Path = bare_path) -> tuple[float, int]:
            return _timed_bare(paths, bare_path, True, fmt)

        if rep % 2 == 0:
            ours_s, ours_bytes = _cpu_timed(ours, ours_cpu)
            bare_s, rows = _cpu_timed(bare, bare_cpu)
        else:
            bare_s, rows = _cpu_timed(bare, bare_cpu)
            ours_s, ours_bytes = _cpu_timed(ours, ours_cpu)
        bare_bytes = bare_path.stat().st_size
        bare_path.unlink()
        nofsync_s, _ = _timed_bare(paths, bare_path, False, fmt)
        bare_path.unlink()
        shutil.rmtree(out, ignore_errors=True)
        ours_rates.append(ours_bytes / ours_s / 1e6)
        bare_rates.append(bare_bytes / bare_s / 1e6)
        nofsync_rates.append(bare_bytes / nofsync_s / 1e6)
        ratios.append(ours_rates[-1] / bare_rates[-1])
    detail = {
        "format": fmt,
        "mb": bare_bytes / 1e6,
        "rows": rows,
        "ours_mb_s": _median(ours_rates),
        "bare_mb_s": _median(bare_rates),
        "bare_nofsync_mb_s": _median(nofsync_rates),
        "vs_bare_without_fsync": _median(
            [o / n for o, n in zip(ours_rates, nofsync_rates, strict=True)]
        ),
        # CPU seconds of the whole process (every thread), user + system: what a loaded
        # machine distorts less than wall time.
        "ours_cpu_s": _median(ours_cpu),
        "bare_cpu_s": _median(bare_cpu),
    }
    return ratios, detail


def _timed_bare(paths: list[str], path: Path, fsync: bool, fmt: str) -> tuple[float, int]:
    """Return the seconds of mapping the parts and writing them bare, and the rows written."""
    started = time.perf_counter()
    table = _bare_table(paths)
    bare_write(table, path, fsync, fmt)
    return time.perf_counter() - started, table.num_rows


def _cpu_timed(side: Any, cpu: list[float]) -> tuple[float, int]:
    """Return what `side()` returns; append the CPU seconds it took (every thread of this
    process, user + system) to `cpu`."""
    import resource

    def used() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    before = used()
    result = side()
    cpu.append(used() - before)
    return result


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def staged_corpus(folder: Path, records: int, image_kb: int = 64) -> tuple[Any, pa.Table]:
    """Stage `records` synthetic one-image conversations as part files; return (parts, index)
    as the augment stage hands them to the writer (for running this benchmark alone)."""
    import numpy as np

    from pipeline.record.ids import original_id
    from pipeline.record.schema import WORK_SCHEMA, records_to_table
    from pipeline.store.staging import PartSet, PartWriter
    from pipeline.store.writer import table_index

    rng = np.random.default_rng(0)
    index = []
    with PartWriter(str(folder / "parts"), WORK_SCHEMA, 16 << 20, 4096) as writer:
        for start in range(0, records, 256):
            rows = []
            for i in range(start, min(records, start + 256)):
                payload = rng.bytes(image_kb * 1024)  # stands in for encoded image bytes
                rows.append(
                    {
                        "id": original_id("bench", str(i)),
                        "source": "bench",
                        "split": ("train", "train", "train", "validation", "test")[i % 5],
                        "messages": [
                            {"role": "user", "content": f"<image> what is this, {i}?"},
                            {"role": "assistant", "content": f"A picture, number {i}."},
                        ],
                        "images": [{"bytes": payload, "path": f"{i}.png"}],
                        "audios": [],
                    }
                )
            table = records_to_table(rows, WORK_SCHEMA)
            where = writer.write(table)
            index.append(table_index(table, where))
    return PartSet(writer.paths), pa.concat_tables(index)


def main() -> None:
    """`python -m benchmarks.writer [--records N] [--format parquet|arrow] [--reps R]`."""
    import argparse
    import json
    import tempfile

    from pipeline.store.shards import DEFAULT_FORMAT, FORMATS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roleforge-writer-") as tmp:
        parts, index = staged_corpus(Path(tmp), args.records)
        ratios, detail = writer_vs_pyarrow(
            parts, index, Path(tmp) / "out", args.reps, fmt=args.format
        )
    detail["ratios"] = ratios
    detail["median_ratio"] = _median(ratios)
    print(json.dumps(detail, indent=2))


if __name__ == "__main__":
    main()
