"""`read_parquet`: one Parquet file read whole, as `pq.read_table` reads it, without the
`pyarrow.dataset` scanner whose threads can abort the interpreter at exit."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.store.parquet import read_parquet
from tests.fixtures.fresh_python import run_python

TABLE = pa.table({"id": ["a", "b"], "n": [1, 2]}).replace_schema_metadata({b"memo": b"{}"})


def _parquet_bytes() -> bytes:
    out = io.BytesIO()
    pq.write_table(TABLE, out)
    return out.getvalue()


def test_it_reads_bytes_a_file_and_a_mapped_path_as_read_table_does(tmp_path: Path) -> None:
    data = _parquet_bytes()
    path = tmp_path / "t.parquet"
    path.write_bytes(data)
    expected = pq.read_table(path)
    with path.open("rb") as f:
        read = [read_parquet(data), read_parquet(f), read_parquet(str(path), memory_map=True)]
    for table in read:
        assert table.equals(expected, check_metadata=True)
        assert table.schema.metadata[b"memo"] == b"{}"
    assert read_parquet(data, columns=["id"]).column_names == ["id"]


def test_it_reads_without_importing_pyarrow_dataset(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(_parquet_bytes())
    code = (
        "import sys\n"
        "from pipeline.store.parquet import read_parquet\n"
        f"read_parquet(open({str(path)!r}, 'rb').read())\n"
        "print('pyarrow.dataset' in sys.modules)\n"
    )
    assert run_python(code).stdout.split() == ["False"]
