"""The ingest memo's own rules: what it keeps, and when a file may be read from its old end."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from pipeline.execution.ingest_memo import IngestMemo, MemoRead, file_prefix, usable_memo
from pipeline.readers.source_fs import LOCAL
from pipeline.record.rejection import QuarantineEntry
from pipeline.store.fs import LocalFS

LINES = b'{"a": 1}\n{"a": 2}\n'


def _memo(size: int, sha256: str, signatures: pa.Table | None = None) -> IngestMemo:
    return IngestMemo(
        size=size,
        sha256=sha256,
        lines=2,
        detected="llamafactory",
        records_in=2,
        quarantine=[QuarantineEntry("ingest", "invalid_json", "bad", "s", "d.jsonl:2")],
        unmapped={"extra": 1},
        media=[{"source": "s", "kind": "media", "path": "a.png", "sha256": None, "bytes": None}],
        keys=pa.table({"id": ["x"], "key": ["k"]}),
        signatures=signatures,
    )


def test_file_prefix_hashes_the_old_bytes_and_the_whole_file_in_one_read(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(LINES + b'{"a": 3}\n')
    now = file_prefix(str(path), len(LINES), LOCAL)
    assert now.prefix_sha256 == hashlib.sha256(LINES).hexdigest() and now.prefix_ends_line
    assert now.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (now.size, now.lines, now.ends_line) == (len(LINES) + 9, 3, True)


def test_a_memo_whose_old_end_falls_inside_a_line_or_whose_bytes_changed_is_not_used(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(LINES + b'{"a": 3}\n')
    holds = lambda pins: True  # noqa: E731
    inside = len(LINES) - 3
    cut = _memo(inside, hashlib.sha256(LINES[:inside]).hexdigest())
    assert usable_memo(cut, str(path), file_prefix(str(path), inside, LOCAL), holds, LOCAL) is None
    edited = _memo(len(LINES), hashlib.sha256(b"other").hexdigest())
    now = file_prefix(str(path), len(LINES), LOCAL)
    assert usable_memo(edited, str(path), now, holds, LOCAL) is None
    grown = _memo(len(LINES), hashlib.sha256(LINES).hexdigest())
    assert usable_memo(grown, str(path), now, holds, LOCAL) is grown
    assert usable_memo(grown, str(path), now, lambda pins: False, LOCAL) is None


def test_no_memo_is_kept_of_a_file_whose_last_line_is_not_ended(tmp_path: Path) -> None:
    # Appending to it would change its last record: the next run must read it whole.
    path = tmp_path / "d.jsonl"
    path.write_bytes(LINES + b'{"a": 3}')
    read = MemoRead(
        str(tmp_path / "memo.parquet"), str(path), file_prefix(str(path), 0, LOCAL), None
    )
    read.keep(_memo(len(LINES) + 8, "x"), LocalFS(), LOCAL)
    assert not (tmp_path / "memo.parquet").exists()


def test_a_memo_reads_back_as_written_signatures_included() -> None:
    signatures = pa.table({"id": ["x", "x"], "item": pa.array([0, 1], pa.int32())})
    memo = _memo(len(LINES), "s", signatures)
    again = IngestMemo.from_bytes(memo.to_bytes())
    assert again.keys.equals(memo.keys) and again.signatures.equals(signatures)
    assert (again.quarantine, again.unmapped, again.media) == (
        memo.quarantine,
        memo.unmapped,
        memo.media,
    )
    assert again.lines_from().offset == len(LINES) and again.lines_from().line == 2
