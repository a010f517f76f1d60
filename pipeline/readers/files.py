"""The input files of a source and the raw items in them, one at a time.

Lines of JSONL are read as bytes and decoded one by one, so one line of bad UTF-8 costs only
that line. Tables are read in small batches so a file's media never sits in memory at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.record.rejection import RecordRejected

JSON_LINES_EXTS = (".jsonl", ".ndjson")
TABLE_EXTS = (".parquet", ".arrow")
CORPUS_EXTS = (*JSON_LINES_EXTS, ".json", *TABLE_EXTS)
ROWS_PER_BATCH = 32
EXCERPT_CHARS = 200


@dataclass(frozen=True)
class RawItem:
    """One record as stored: its key (line or row index) and either its value or why it failed."""

    key: str
    value: Any = None
    error: RecordRejected | None = None
    excerpt: str | None = None


def corpus_files(path: str, exclude: set[str] | None = None) -> list[str]:
    """Return the corpus files of a source path, sorted: the file itself, or a folder's files.

    A folder that is a committed version (`versions/v<N>/` beside `v<N>.json`) yields exactly
    the shards its manifest lists: readers trust only manifests.
    """
    if not os.path.isdir(path):
        return [os.path.abspath(path)]
    manifest = _version_manifest(path)
    if manifest is not None:
        return [os.path.abspath(os.path.join(path, s["path"])) for s in manifest["shards"]]
    exclude = {os.path.realpath(p) for p in exclude or ()}
    found = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in files:
            full = os.path.abspath(os.path.join(folder, name))
            if name.endswith(CORPUS_EXTS) and os.path.realpath(full) not in exclude:
                found.append(full)
    return sorted(found)


def _version_manifest(folder: str) -> dict[str, Any] | None:
    candidate = os.path.normpath(folder) + ".json"
    if not os.path.isfile(candidate):
        return None
    try:
        with open(candidate, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return (
        manifest
        if isinstance(manifest, dict) and isinstance(manifest.get("shards"), list)
        else None
    )


def iter_raw_items(path: str) -> Iterator[RawItem]:
    """Yield the raw items of one corpus file, chosen by its extension (JSONL when unknown)."""
    if path.endswith(".json"):
        yield from _json_items(path)
    elif path.endswith(".parquet"):
        yield from _parquet_items(path)
    elif path.endswith(".arrow"):
        yield from _arrow_items(path)
    else:
        yield from _json_line_items(path)


def _json_line_items(path: str) -> Iterator[RawItem]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            yield _parse_line(str(lineno), raw)


def _parse_line(key: str, raw: bytes) -> RawItem:
    raw = raw.strip()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawItem(
            key,
            error=RecordRejected("invalid_utf8", f"byte {exc.start} is not UTF-8: {exc.reason}"),
            excerpt=_excerpt(raw.decode("utf-8", errors="replace")),
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawItem(
            key,
            error=RecordRejected("invalid_json", f"not JSON: {exc.msg} at column {exc.colno}"),
            excerpt=_excerpt(text),
        )
    return _object_item(key, value, excerpt_source=text)


def _object_item(key: str, value: Any, excerpt_source: str | None = None) -> RawItem:
    if not isinstance(value, dict):
        return RawItem(
            key,
            error=RecordRejected(
                "wrong_types", f"a record must be a JSON object, not {type(value).__name__}"
            ),
            excerpt=_excerpt(excerpt_source) if excerpt_source else None,
        )
    return RawItem(key, value=value)


def _json_items(path: str) -> Iterator[RawItem]:
    with open(path, "rb") as f:
        data = f.read()
    # surrogateescape keeps undecodable bytes as lone surrogates, so a bad byte inside one
    # element of an array costs that element only, not the whole file.
    text = data.decode("utf-8", errors="surrogateescape")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            # One value parsed and more follow: a .json file holding JSON lines.
            yield from _json_line_items(path)
            return
        yield RawItem(
            "0",
            error=RecordRejected(
                "invalid_json", f"the whole file is not JSON: {exc.msg} at line {exc.lineno}"
            ),
            excerpt=_excerpt(text.encode("utf-8", "replace").decode("utf-8")),
        )
        return
    values = value if isinstance(value, list) else [value]
    for index, item in enumerate(values):
        if _holds_undecodable_text(item):
            yield RawItem(
                str(index),
                error=RecordRejected("invalid_utf8", "the record holds bytes that are not UTF-8"),
            )
        else:
            yield _object_item(str(index), item)


def _holds_undecodable_text(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(
            _holds_undecodable_text(k) or _holds_undecodable_text(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_holds_undecodable_text(v) for v in value)
    return False


def _parquet_items(path: str) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    index = 0
    with pq.ParquetFile(path) as f:
        for batch in f.iter_batches(batch_size=ROWS_PER_BATCH):
            for row in batch.to_pylist():
                yield _object_item(str(index), row)
                index += 1


def _arrow_items(path: str) -> Iterator[RawItem]:
    import pyarrow as pa

    # Memory-mapped and sliced, so a 256 MB shard is never turned into Python objects at once.
    with pa.memory_map(path, "r") as source:
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            batches = iter(pa.ipc.open_stream(source))
        index = 0
        for batch in batches:
            for start in range(0, batch.num_rows, ROWS_PER_BATCH):
                for row in batch.slice(start, ROWS_PER_BATCH).to_pylist():
                    yield _object_item(str(index), row)
                    index += 1


def _excerpt(text: str) -> str:
    return text[:EXCERPT_CHARS]
