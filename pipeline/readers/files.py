"""The input files of a source and the raw items in them, one at a time.

Lines of JSONL are read as bytes and decoded one by one, so one line of bad UTF-8 costs only
that line. Tables are read in small batches so a file's media never sits in memory at once.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.readers.encoding import UTF8, UTF8_BOM, sniff_encoding, strip_bom
from pipeline.readers.png_card import MAX_CHUNK_BYTES, card_json_from_png
from pipeline.readers.source_fs import LOCAL, SourceFS
from pipeline.record.location import abspath, join, normpath, realpath
from pipeline.record.rejection import RecordRejected

if TYPE_CHECKING:
    from pipeline.recipe import Recipe, SourceConfig

JSON_LINES_EXTS = (".jsonl", ".ndjson")
TABLE_EXTS = (".parquet", ".arrow")
CORPUS_EXTS = (*JSON_LINES_EXTS, ".json", *TABLE_EXTS, ".charx")
ROWS_PER_BATCH = 32
EXCERPT_CHARS = 200


@dataclass(frozen=True)
class RawItem:
    """One record as stored: its key (line or row index) and either its value or why it failed."""

    key: str
    value: Any = None
    error: RecordRejected | None = None
    excerpt: str | None = None


@dataclass(frozen=True)
class LinesFrom:
    """Where to read a UTF-8 JSON lines file from instead of its start: byte `offset` (a
    line's first byte), numbering lines from `line` + 1 as a whole read would; `only`
    (line numbers) yields those lines alone; `end` (a line's first byte, or the file's
    size) stops before it: one range of a file that several ingest tasks share. `detected`
    is the format the whole read detected from the file's first records (for a source of
    format `auto`)."""

    offset: int = 0
    line: int = 0
    detected: str | None = None
    only: frozenset[int] | None = None
    end: int | None = None


def json_lines_from(path: str, at: LinesFrom, fs: SourceFS = LOCAL) -> Iterator[RawItem]:
    """Yield the raw items of a JSON lines file from `at` on (see `LinesFrom`)."""
    with fs.open(path) as f:
        f.seek(at.offset)
        at_byte = at.offset
        for lineno, raw in enumerate(f, start=at.line + 1):
            if at.end is not None and at_byte >= at.end:
                return
            at_byte += len(raw)
            if at.only is not None and lineno not in at.only:
                continue
            if raw.strip():
                yield _parse_line(str(lineno), raw)


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
    of JSON lines as lines; a PNG is a character card. Text files may be UTF-8 (with or
    without a BOM), UTF-16 or UTF-32. A JSON array is streamed element by element.
    """
    kind = _binary_kind(path, fs)
    if kind == "parquet":
        yield from _parquet_items(path, fs)
    elif kind == "arrow":
        yield from _arrow_items(path, fs)
    elif kind == "png":
        yield from _png_card_items(path, fs)
    elif kind == "charx":
        yield from _charx_card_items(path, fs)
    else:
        source = _utf8_source(path, fs)
        if isinstance(source, RawItem):
            yield source
        elif _text_kind(path, source) == "json":
            yield from _json_items(source)
        else:
            yield from _json_line_items(source)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
# After the first line, this much is enough to tell whether anything else follows.
SNIFF_BYTES = 1 << 16
# A UTF-16/32 file is transcoded in memory (such files are rare, small exports); over this
# it is refused in one line naming its encoding.
MAX_WIDE_TEXT_BYTES = 256 * 1024 * 1024
# How much of a JSON array is read at a time: memory holds one chunk plus one element.
ARRAY_CHUNK_CHARS = 1 << 20

Opener = Callable[[], Any]  # opens a binary stream of the file's text as UTF-8


def sniff_kind(path: str, fs: SourceFS = LOCAL) -> str:
    """Return how a file is stored: parquet, arrow, png, json (one document) or jsonl."""
    kind = _binary_kind(path, fs)
    if kind is not None:
        return kind
    source = _utf8_source(path, fs)
    return "jsonl" if isinstance(source, RawItem) else _text_kind(path, source)


def _binary_kind(path: str, fs: SourceFS) -> str | None:
    if path.endswith(".parquet"):
        return "parquet"
    if path.endswith(".arrow"):
        return "arrow"
    with fs.open(path) as f:
        head = f.read(8)
    if head.startswith(ZIP_SIGNATURE) and path.endswith(".charx"):
        return "charx"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1"):
        return "arrow"
    if head == PNG_SIGNATURE:
        return "png"
    return None


def _utf8_source(path: str, fs: SourceFS) -> Opener | RawItem:
    """Return how to open the file's text as UTF-8 bytes, or the one item saying why its
    UTF-16/32 text cannot be read."""
    with fs.open(path) as f:
        head = f.read(8)
    codec = sniff_encoding(head)
    if codec == UTF8:
        return lambda: fs.open(path)
    name = codec.upper()
    with fs.open(path) as f:
        data = f.read(MAX_WIDE_TEXT_BYTES + 1)
    if len(data) > MAX_WIDE_TEXT_BYTES:
        return RawItem(
            "0",
            error=RecordRejected(
                "invalid_utf8",
                f"the file is {name} text over {MAX_WIDE_TEXT_BYTES} bytes; re-save it as UTF-8",
            ),
        )
    try:
        text = strip_bom(data.decode(codec))
    except UnicodeDecodeError as exc:
        return RawItem(
            "0",
            error=RecordRejected(
                "invalid_utf8",
                f"the file is {name} text but byte {exc.start} does not decode: {exc.reason}",
            ),
        )
    utf8 = text.encode("utf-8", errors="surrogatepass")
    return lambda: io.BytesIO(utf8)


def _text_kind(path: str, source: Opener) -> str:
    with source() as f:
        first = _first_content_line(f)
        more = bool(f.read(SNIFF_BYTES).strip())
    start = first.lstrip(UTF8_BOM + b" \t\r\n")[:1]
    if start not in (b"[", b"{"):
        return "json" if path.endswith(".json") else "jsonl"
    try:
        json.loads(first.lstrip(UTF8_BOM))
    except (ValueError, RecursionError):
        # An array or object opened on its own line is one pretty-printed document; any
        # other line that does not parse is a broken record of a JSON lines file.
        opened_alone = first.strip().lstrip(UTF8_BOM) in (b"[", b"{")
        return "json" if opened_alone or path.endswith(".json") else "jsonl"
    # A whole array on the only line is the document; followed by more lines it is the
    # first (bad) record of a JSON lines file.
    if start == b"[" and not more:
        return "json"
    return "jsonl"


def _first_content_line(f: Any) -> bytes:
    # Bounded: the first line of a minified multi-GB array is the whole file.
    while raw := f.readline(SNIFF_BYTES):
        if raw.strip():
            return raw
    return b""


def _json_line_items(source: Opener) -> Iterator[RawItem]:
    with source() as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            yield _parse_line(str(lineno), raw)


def _parse_line(key: str, raw: bytes) -> RawItem:
    # A BOM starts the first line of an exported file (and every part of concatenated ones).
    raw = raw.strip().removeprefix(UTF8_BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawItem(
            key,
            error=RecordRejected("invalid_utf8", f"byte {exc.start} is not UTF-8: {exc.reason}"),
            excerpt=_excerpt(raw.decode("utf-8", errors="replace")),
        )
    return _parse_text(key, text)


class DuplicateKey(ValueError):
    """A JSON object names one key twice."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateKey(twice)
    return value


# Every JSON text of a corpus is parsed with this: a key written twice is the record's
# error (duplicate_key), never silently the last value.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _parse_text(key: str, text: str) -> RawItem:
    try:
        value = _DECODER.decode(text)
    except DuplicateKey as exc:
        return RawItem(
            key,
            error=RecordRejected(
                "duplicate_key", f"the key {str(exc)!r} appears twice in one object"
            ),
            excerpt=_excerpt(text),
        )
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
    if _may_hold_surrogates(excerpt_source) and _holds_undecodable_text(value):
        return RawItem(
            key,
            error=RecordRejected("invalid_utf8", "the record holds bytes that are not UTF-8"),
        )
    return RawItem(key, value=value)


class _TextChunks:
    """A binary stream read as text in chunks; undecodable bytes kept as lone surrogates
    (surrogateescape), so a bad byte inside one array element costs that element only."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.eof = False

    def read(self) -> str:
        while not self.eof:
            data = self._f.read(ARRAY_CHUNK_CHARS)
            if not data:
                self.eof = True
                return self._decoder.decode(b"", final=True)
            text = self._decoder.decode(data)
            if text:
                return text
        return ""


def _json_items(source: Opener) -> Iterator[RawItem]:
    with source() as f:
        chunks = _TextChunks(f)
        text = strip_bom(chunks.read())
        while not text.strip() and not chunks.eof:
            text += chunks.read()
        if text.lstrip().startswith("["):
            yield from _array_items(chunks, text, text.index("[") + 1)
            return
        while not chunks.eof:
            text += chunks.read()
    yield from _document_items(text)


def _document_items(text: str) -> Iterator[RawItem]:
    """Yield the items of a JSON text that is not an array: one object, or several
    pretty-printed objects one after another."""
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            yield from _concatenated_items(text)
            return
        yield RawItem(
            "0",
            error=RecordRejected(
                "invalid_json", f"the whole file is not JSON: {exc.msg} at line {exc.lineno}"
            ),
            excerpt=_excerpt(text),
        )
        return
    except (DuplicateKey, RecursionError):
        yield _parse_text("0", text)
        return
    yield _object_item("0", value)


def _array_items(chunks: _TextChunks, buf: str, pos: int) -> Iterator[RawItem]:
    """Yield each element of a JSON array as it is read (`buf[pos:]` follows the `[`).

    Each element is parsed on its own, so memory holds one chunk and one element, and a
    malformed (or too deeply nested, or duplicate-keyed) element costs that element only;
    a truncated file keeps the elements before the cut.
    """
    index = 0
    while True:
        while pos < len(buf) and (buf[pos].isspace() or buf[pos] == ","):
            pos += 1
        if pos >= len(buf):
            if chunks.eof:
                return
            buf, pos = buf[pos:] + chunks.read(), 0
            continue
        if buf[pos] == "]":
            return
        try:
            value, end = _DECODER.raw_decode(buf, pos)
            if end < len(buf) or chunks.eof:
                yield _object_item(str(index), value)
                index, pos = index + 1, end
                continue
        except (ValueError, RecursionError):
            pass
        # The element did not parse: it is cut by the chunk's end, or it is broken. Its end
        # (the comma or bracket after it) tells which.
        end = _element_end(buf, pos)
        while end is None and not chunks.eof:
            buf, pos = buf[pos:] + chunks.read(), 0
            end = _element_end(buf, pos)
        yield _parse_text(str(index), buf[pos:end] if end is not None else buf[pos:])
        index += 1
        if end is None:
            return
        pos = end


# Strings (with escapes), brackets and commas; a lone quote is a string the buffer cuts.
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]|"', re.DOTALL)


def _element_end(buf: str, pos: int) -> int | None:
    """Return the index of the comma or bracket that ends the array element starting at
    `pos`, or None when the buffer ends first."""
    depth = 0
    for m in _STRUCTURE.finditer(buf, pos):
        token = m.group(0)
        if token == '"':
            return None
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth < 0:
                return m.start()
        elif token == "," and depth == 0:
            return m.start()
    return None


def _concatenated_items(text: str) -> Iterator[RawItem]:
    pos, index = 0, 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except (json.JSONDecodeError, DuplicateKey, RecursionError) as exc:
            reason = {RecursionError: "nesting_too_deep", DuplicateKey: "duplicate_key"}.get(
                type(exc), "invalid_json"
            )
            yield RawItem(
                str(index),
                error=RecordRejected(reason, "the rest of the file does not parse as JSON"),
                excerpt=_excerpt(text[pos:]),
            )
            return
        yield _object_item(str(index), value)
        index += 1


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): the only way a value parsed from
# text that is itself valid UTF-8 can hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _may_hold_surrogates(text: str | None) -> bool:
    """Return False when a value parsed from `text` cannot hold a lone surrogate: `text` has
    none itself and no escape of one. Two scans in C of the line instead of a walk over every
    string of the parsed record in Python (~0.005 ms a benchmark record, measured in
    `read_source`)."""
    if text is None:
        return True
    return not is_utf8_encodable(text) or _SURROGATE_ESCAPE.search(text) is not None


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


def _charx_card_items(path: str, fs: SourceFS) -> Iterator[RawItem]:
    """Yield the card of a CHARX file (character card v3: a zip with `card.json` at its
    root; its assets, the character's icons and backgrounds, are not dialogue media)."""
    import zipfile

    try:
        with fs.open(path) as f, zipfile.ZipFile(f) as archive:
            info = archive.getinfo("card.json")
            with archive.open(info) as card:
                # Read with a bound: a zip's declared size can lie.
                data = card.read(MAX_CHUNK_BYTES + 1)
    except KeyError:
        yield RawItem("0", error=RecordRejected("invalid_json", "the CHARX file has no card.json"))
        return
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        yield RawItem(
            "0", error=RecordRejected("invalid_json", f"not a readable CHARX (zip) file: {exc}")
        )
        return
    if len(data) > MAX_CHUNK_BYTES:
        yield RawItem(
            "0", error=RecordRejected("media_too_large", "card.json is over the card size limit")
        )
        return
    yield _parse_line("0", data)


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


# ---- a source's files (light: an unchanged rerun lists them without the readers) ----


def source_input_files(source: SourceConfig, recipe: Recipe) -> list[str]:
    """Return the absolute locations of a source's input files (dialogue, characters and
    persona files), sorted."""
    characters = characters_paths(source, recipe)
    files = corpus_files(recipe.resolve(source.path), set(characters), SourceFS.of(recipe))
    files += characters
    if source.persona:
        files.append(abspath(recipe.resolve(source.persona)))
    return sorted(set(files))


def source_files(source: SourceConfig, recipe: Recipe) -> list[str]:
    """Return the corpus files of a source, in reading order (its characters files excluded)."""
    path = recipe.resolve(source.path)
    return corpus_files(path, set(characters_paths(source, recipe)), SourceFS.of(recipe))


def characters_paths(source: SourceConfig, recipe: Recipe) -> list[str]:
    """Return the absolute locations of a source's characters files."""
    return [abspath(recipe.resolve(p)) for p in source.characters_files]
