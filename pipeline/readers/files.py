"""The input files of a source and the raw items in them, one at a time.

Lines of JSONL are read as bytes and decoded one by one, so one line of bad UTF-8 costs only
that line. Tables are read in small batches so a file's media never sits in memory at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.readers.png_card import card_json_from_png
from pipeline.readers.source_fs import LOCAL, SourceFS
from pipeline.record.location import abspath, join, normpath, realpath
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


def corpus_files(path: str, exclude: set[str] | None = None, fs: SourceFS = LOCAL) -> list[str]:
    """Return the corpus files of a source location, sorted: the file itself, or a folder's
    files (local or on an object store).

    A folder that is a committed version (`versions/v<N>/` beside `v<N>.json`) yields exactly
    the shards its manifest lists: readers trust only manifests.
    """
    if not fs.isdir(path):
        return [abspath(path)]
    manifest = _version_manifest(path, fs)
    if manifest is not None:
        return [abspath(join(path, s["path"])) for s in manifest["shards"]]
    exclude = {realpath(p) for p in exclude or ()}
    found = [
        full
        for full in fs.files_under(path)
        if full.endswith(CORPUS_EXTS) and realpath(full) not in exclude
    ]
    return sorted(found)


def _version_manifest(folder: str, fs: SourceFS) -> dict[str, Any] | None:
    candidate = normpath(folder).rstrip("/") + ".json"
    if not fs.is_regular_file(candidate):
        return None
    try:
        manifest = json.loads(fs.read_bytes(candidate))
    except (OSError, ValueError):
        return None
    return (
        manifest
        if isinstance(manifest, dict) and isinstance(manifest.get("shards"), list)
        else None
    )


def iter_raw_items(path: str, fs: SourceFS = LOCAL) -> Iterator[RawItem]:
    """Yield the raw items of one corpus file, judged by its content, not only its name.

    A `.jsonl` that holds one JSON array is read as the array (not line by line), a `.json`
    of JSON lines as lines; a PNG is a character card.
    """
    kind = sniff_kind(path, fs)
    if kind == "parquet":
        yield from _parquet_items(path, fs)
    elif kind == "arrow":
        yield from _arrow_items(path, fs)
    elif kind == "png":
        yield from _png_card_items(path, fs)
    elif kind == "json":
        yield from _json_items(path, fs)
    else:
        yield from _json_line_items(path, fs)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# After the first line, this much is enough to tell whether anything else follows.
SNIFF_BYTES = 1 << 16


def sniff_kind(path: str, fs: SourceFS = LOCAL) -> str:
    """Return how a file is stored: parquet, arrow, png, json (one document) or jsonl."""
    if path.endswith(".parquet"):
        return "parquet"
    if path.endswith(".arrow"):
        return "arrow"
    with fs.open(path) as f:
        head = f.read(8)
        if head.startswith(b"PAR1"):
            return "parquet"
        if head.startswith(b"ARROW1"):
            return "arrow"
        if head == PNG_SIGNATURE:
            return "png"
        f.seek(0)
        first = _first_content_line(f)
        more = bool(f.read(SNIFF_BYTES).strip())
    start = first.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start not in (b"[", b"{"):
        return "json" if path.endswith(".json") else "jsonl"
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        # An array or object opened on its own line is one pretty-printed document; any
        # other line that does not parse is a broken record of a JSON lines file.
        opened_alone = first.strip().lstrip(b"\xef\xbb\xbf") in (b"[", b"{")
        return "json" if opened_alone or path.endswith(".json") else "jsonl"
    # A whole array on the only line is the document; followed by more lines it is the
    # first (bad) record of a JSON lines file.
    if start == b"[" and not more:
        return "json"
    return "jsonl"


def _first_content_line(f: Any) -> bytes:
    for raw in f:
        if raw.strip():
            return raw
    return b""


def _json_line_items(path: str, fs: SourceFS) -> Iterator[RawItem]:
    with fs.open(path) as f:
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
    return _parse_text(key, text)


def _parse_text(key: str, text: str) -> RawItem:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawItem(
            key,
            error=RecordRejected("invalid_json", f"not JSON: {exc.msg} at column {exc.colno}"),
            excerpt=_excerpt(text),
        )
    except RecursionError:
        return RawItem(
            key,
            error=RecordRejected("nesting_too_deep", "the value is nested too deeply to parse"),
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
    if _holds_undecodable_text(value):
        return RawItem(
            key,
            error=RecordRejected("invalid_utf8", "the record holds bytes that are not UTF-8"),
        )
    return RawItem(key, value=value)


def _json_items(path: str, fs: SourceFS) -> Iterator[RawItem]:
    with fs.open(path) as f:
        data = f.read()
    # surrogateescape keeps undecodable bytes as lone surrogates, so a bad byte inside one
    # element of an array costs that element only, not the whole file.
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            # One value parsed and more follow: pretty-printed objects one after another.
            yield from _concatenated_items(text)
            return
        yield from _salvaged_items(text, f"{exc.msg} at line {exc.lineno}")
        return
    except RecursionError:
        yield from _salvaged_items(text, "nested too deeply")
        return
    values = value if isinstance(value, list) else [value]
    for index, item in enumerate(values):
        yield _object_item(str(index), item)


def _concatenated_items(text: str) -> Iterator[RawItem]:
    decoder = json.JSONDecoder()
    pos, index = 0, 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        try:
            value, pos = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = "nesting_too_deep" if isinstance(exc, RecursionError) else "invalid_json"
            yield RawItem(
                str(index),
                error=RecordRejected(reason, "the rest of the file does not parse as JSON"),
                excerpt=_excerpt(text[pos:]),
            )
            return
        yield _object_item(str(index), value)
        index += 1


# Strings (with escapes) and the brackets and commas between them; everything else is
# inside an element and of no interest to the element splitter.
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def _salvaged_items(text: str, problem: str) -> Iterator[RawItem]:
    """Yield each element of a JSON array that does not parse as a whole, parsed on its own.

    One malformed (or too deeply nested) element then costs that element; the good ones
    are kept, and the count of items is the file's real element count.
    """
    elements = split_array_elements(text)
    if elements is None:
        yield RawItem(
            "0",
            error=RecordRejected("invalid_json", f"the whole file is not JSON: {problem}"),
            excerpt=_excerpt(text),
        )
        return
    for index, element in enumerate(elements):
        yield _parse_text(str(index), element)


def split_array_elements(text: str) -> list[str] | None:
    """Return the texts of a top-level JSON array's elements, or None if `text` is no array."""
    body = text.strip()
    if not body.startswith("["):
        return None
    elements: list[str] = []
    depth, start = 0, 1
    for m in _STRUCTURE.finditer(body):
        token = m.group(0)
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                elements.append(body[start : m.start()])
                return [e for e in elements if e.strip()]
        elif token == "," and depth == 1:
            elements.append(body[start : m.start()])
            start = m.end()
    # The array never closed (a truncated file): what was seen is still its elements.
    elements.append(body[start:])
    return [e for e in elements if e.strip()]


def _holds_undecodable_text(value: Any) -> bool:
    # Iterative: a record nested thousands of levels deep must not exhaust the stack.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_utf8_encodable(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def is_utf8_encodable(text: str) -> bool:
    """Return whether `text` can be written as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _png_card_items(path: str, fs: SourceFS) -> Iterator[RawItem]:
    try:
        text = card_json_from_png(path, fs)
    except RecordRejected as exc:
        yield RawItem("0", error=exc)
        return
    yield _parse_text("0", text)


def _parquet_items(path: str, fs: SourceFS) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    index = 0
    with fs.open_arrow(path) as source, pq.ParquetFile(source) as f:
        for batch in f.iter_batches(batch_size=ROWS_PER_BATCH):
            for row in batch.to_pylist():
                yield _object_item(str(index), row)
                index += 1


def _arrow_items(path: str, fs: SourceFS) -> Iterator[RawItem]:
    import pyarrow as pa

    # Memory-mapped (or read by ranges) and sliced, so a 256 MB shard is never turned into
    # Python objects at once.
    with fs.open_arrow(path) as source:
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
    # Undecodable bytes arrive as lone surrogates; an excerpt must stay writable as UTF-8.
    return text[:EXCERPT_CHARS].encode("utf-8", "replace").decode("utf-8")
