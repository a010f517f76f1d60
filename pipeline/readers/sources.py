"""What `pipeline.readers` exports (its docstring): reading a source, its checks and
the media its records name."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.readers.agnai import parse_agnai
from pipeline.readers.arrow import parse_canonical
from pipeline.readers.assemble import (
    FileContext,
    ParsedRecord,
    assemble_record,
    refuse_unsupported_media,
    unusable_path_rejected,
)
from pipeline.readers.characterbench import parse_characterbench
from pipeline.readers.charactereval import parse_charactereval
from pipeline.readers.characterllm import parse_characterllm
from pipeline.readers.chatharuhi import parse_chatharuhi
from pipeline.readers.detect import SHAPES, Detection, detect, detect_format, fits_format
from pipeline.readers.encoding import decode_text
from pipeline.readers.files import (
    LinesFrom,
    RawItem,
    characters_paths,
    corpus_files,
    iter_raw_items,
    json_lines_from,
    source_files,
    source_input_files,
)
from pipeline.readers.llamafactory import (
    parse_llamafactory,
    parse_sharegpt,
    parse_swift_conversation,
)
from pipeline.readers.mmrole import parse_mmrole
from pipeline.readers.parts import parse_parts
from pipeline.readers.personas import read_characters
from pipeline.readers.pippa import parse_pippa
from pipeline.readers.risuai import parse_risuai
from pipeline.readers.rolebench import parse_rolebench
from pipeline.readers.sillytavern import is_chat_header, parse_chat_log
from pipeline.readers.source_fs import SourceFS
from pipeline.readers.tavern import parse_tavern
from pipeline.recipe import Recipe, SourceConfig
from pipeline.record.characters import BadCharacterLine, CharacterBook
from pipeline.record.config import RecipeError
from pipeline.record.location import dirname, relative_to
from pipeline.record.media import MediaRoot
from pipeline.record.rejection import QuarantineEntry, RecordRejected

__all__ = [
    "PARSERS",
    "LinesFrom",
    "SourceReadStats",
    "check_source_paths",
    "detect_format",
    "read_source",
    "referenced_media",
    "source_files",
    "source_input_files",
    "whole_read_format",
]

log = logging.getLogger(__name__)
STAGE = "ingest"
# How many records of a file detection looks at before it calls the file unreadable.
DETECT_RECORDS = 20

Parser = Callable[[dict[str, Any]], ParsedRecord | list[ParsedRecord]]
PARSERS: dict[str, Parser] = {
    "llamafactory": parse_llamafactory,
    "sharegpt": parse_sharegpt,
    "swift": parse_swift_conversation,
    "openai": parse_parts,
    "trl": parse_parts,
    "pippa": parse_pippa,
    "mmrole": parse_mmrole,
    "chatharuhi": parse_chatharuhi,
    "charactereval": parse_charactereval,
    "characterllm": parse_characterllm,
    "characterbench": parse_characterbench,
    "rolebench": parse_rolebench,
    "agnai": parse_agnai,
    "risuai": parse_risuai,
    "tavern": parse_tavern,
    "arrow": parse_canonical,
}


@dataclass
class SourceReadStats:
    """What reading one source left behind: field names no canonical field carries, counted.

    `unmapped_fields["script"] == 72` means 72 records (or character entries) had a
    `script` field that the dataset does not keep.
    """

    unmapped_fields: Counter[str] = field(default_factory=Counter)
    # How each file of the source was read when its format was detected, e.g.
    # {"formats/mmrole.json": "mmrole (also fits: sharegpt)"}.
    formats: dict[str, str] = field(default_factory=dict)
    # The format detected per file (its `formats` line's first word; None: none fits),
    # which a later read of the same file from its old end (`LinesFrom`) is given.
    detected: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unmapped_fields": dict(sorted(self.unmapped_fields.items()))}
        if self.formats:
            out["formats"] = dict(sorted(self.formats.items()))
        return out


def check_source_paths(recipe: Recipe) -> None:
    """Raise RecipeError naming the key of every source path, characters, persona or media_dir
    that is missing, not a regular file (or folder of them), or that no reader fits.

    Every source is checked before the error is raised, so one run reports all of their
    problems (one line each), not only the first. Paths may be local or on an object store.
    """
    fs = SourceFS.of(recipe)
    problems: list[str] = []
    for i, source in enumerate(recipe.sources):
        try:
            _check_source(i, source, recipe, fs)
        except RecipeError as exc:
            problems.append(str(exc))
    if problems:
        raise RecipeError("\n".join(problems))


def _check_source(i: int, source: SourceConfig, recipe: Recipe, fs: SourceFS) -> None:
    path = recipe.resolve(source.path)
    if not fs.exists(path):
        raise RecipeError(f"sources.{i}.path: no such file or folder: {path}")
    if fs.isdir(path):
        if not corpus_files(path, fs=fs):
            raise RecipeError(f"sources.{i}.path: folder holds no corpus files: {path}")
    for file in corpus_files(path, set(characters_paths(source, recipe)), fs):
        _require_regular(file, f"sources.{i}.path", fs)
        if source.format == "auto":
            try:
                _require_known_format(file, f"sources.{i}.path", fs)
            except OSError as exc:
                # Unreadable (permissions, a vanished object): this source's line, not a crash
                # that hides every other source's problem.
                raise RecipeError(f"sources.{i}.path: cannot read {file}: {exc}") from None
    for j, characters in enumerate(characters_paths(source, recipe)):
        key = f"sources.{i}.characters" + (f".{j}" if isinstance(source.characters, list) else "")
        _require_regular(characters, key, fs)
    if source.persona:
        _require_regular(recipe.resolve(source.persona), f"sources.{i}.persona", fs)
    if source.media_dir and not fs.isdir(recipe.resolve(source.media_dir)):
        raise RecipeError(
            f"sources.{i}.media_dir: no such folder: {recipe.resolve(source.media_dir)}"
        )


def _require_regular(path: str, key: str, fs: SourceFS) -> None:
    if not fs.exists(path):
        raise RecipeError(f"{key}: no such file: {path}")
    if not fs.is_regular_file(path):
        raise RecipeError(
            f"{key}: {path} is not a regular file (a FIFO, device or socket cannot be a source)"
        )


def _require_known_format(file: str, key: str, fs: SourceFS) -> None:
    detection, items = _detect_file_format(file, iter_raw_items(file, fs))
    if detection.format is not None:
        log.info("%s: read as %s", file, detection.summary())
        return
    if not any(item.error is None for item in itertools.islice(items, DETECT_RECORDS)):
        # Nothing parses at all: that is for the quarantine (invalid_json etc.), not a
        # format question, so a file of broken lines still reports each line.
        return
    known = ", ".join(dict.fromkeys(s.format for s in SHAPES))
    raise RecipeError(
        f"{key}: no reader fits {file} ({detection.refusal()}); formats known: {known}"
    )


def read_source(
    source: SourceConfig,
    recipe: Recipe,
    stats: SourceReadStats | None = None,
    files: list[str] | None = None,
    book_entries: bool = True,
    fs: SourceFS | None = None,
    lines_from: dict[str, LinesFrom] | None = None,
) -> Iterator[dict[str, Any] | QuarantineEntry]:
    """Yield canonical WORK records of one source, or a QuarantineEntry for each that fails to read.

    Records come with media bytes loaded, `split`/`parent_id`/`augmentation` None, and
    `source_ref` = "<file relative to the recipe folder>:<line or index>" (JSONL lines count
    from 1, array and table rows from 0). Files are streamed one record at a time. Fields
    that no canonical field carries are counted in `stats`.

    `files` reads only those of `source_files` (a parallel ingest gives each task some);
    `book_entries=False` loads the characters files without yielding or counting what they
    hold, for every task of a source but one. `fs` opens the files (default: the recipe's
    SourceFS; a Ray task gets the driver's). `lines_from` reads the JSON lines files it
    names from a place other than their start (`LinesFrom`: a grown file's old end).
    """
    stats = stats if stats is not None else SourceReadStats()
    fs = fs or SourceFS.of(recipe)
    path = recipe.resolve(source.path)
    source_folder = path if fs.isdir(path) else dirname(path)
    characters = characters_paths(source, recipe)
    book = CharacterBook(paths=characters, persona=_persona(source, recipe, fs))
    book_stats = stats if book_entries else SourceReadStats()
    for file in characters:
        entries = _load_book(book, file, source, recipe, book_stats, fs)
        if book_entries:
            yield from entries
        else:
            for _ in entries:
                pass
    media_dir = recipe.resolve(source.media_dir) if source.media_dir else None
    for file in files if files is not None else source_files(source, recipe):
        ctx = FileContext(
            source=source,
            limits=recipe.limits,
            book=book,
            file_ref=relative_to(file, recipe.base_dir),
            file_key=relative_to(file, source_folder),
            media_root=MediaRoot(media_dir or dirname(file), source.allow_outside_root, fs),
        )
        yield from _read_file(file, ctx, stats, fs, (lines_from or {}).get(file))


def _persona(source: SourceConfig, recipe: Recipe, fs: SourceFS) -> str | None:
    if not source.persona:
        return None
    text = decode_text(fs.read_bytes(recipe.resolve(source.persona)))
    return text.strip() or None


def _load_book(
    book: CharacterBook,
    file: str,
    source: SourceConfig,
    recipe: Recipe,
    stats: SourceReadStats,
    fs: SourceFS,
) -> Iterator[QuarantineEntry]:
    file_ref = relative_to(file, recipe.base_dir)
    before = len(book.by_name)
    for entry in read_characters(file, stats.unmapped_fields, fs):
        if isinstance(entry, BadCharacterLine):
            # A persona that cannot be used leaves through quarantine like any bad record.
            yield QuarantineEntry(
                stage=STAGE,
                reason=entry.reason,
                message=f"characters file: {entry.message}",
                source=source.name,
                source_ref=f"{file_ref}:{entry.key}",
            )
        else:
            book.add(entry)
    log.debug("source %s: %d characters from %s", source.name, len(book.by_name) - before, file)


def _read_file(
    file: str,
    ctx: FileContext,
    stats: SourceReadStats,
    fs: SourceFS,
    lines_from: LinesFrom | None = None,
) -> Iterator[dict[str, Any] | QuarantineEntry]:
    items = _parsed_items(file, ctx.source.format, fs, stats, ctx.file_ref, lines_from)
    for item, parsed in items:
        if isinstance(parsed, RecordRejected):
            yield _entry(ctx, item, parsed)
            continue
        if isinstance(parsed, Exception):
            yield _unforeseen(ctx, item, parsed)
            continue
        # A card holds several dialogues (greetings, examples): each is a record of its own;
        # its unmapped fields are counted once, for the one item they were read from.
        many = isinstance(parsed, list)
        parts = parsed if isinstance(parsed, list) else [parsed]
        stats.unmapped_fields.update(set().union(*(p.unmapped for p in parts)))
        for n, one in enumerate(parts):
            key = f"{item.key}.{n}" if many else item.key
            try:
                yield assemble_record(one, key, ctx)
            except RecordRejected as exc:
                yield _entry(ctx, RawItem(key, excerpt=item.excerpt), exc)
            except Exception as exc:
                yield _unforeseen(ctx, RawItem(key, excerpt=item.excerpt), exc)


def _parsed_items(
    file: str,
    source_format: str,
    fs: SourceFS,
    stats: SourceReadStats | None = None,
    file_ref: str | None = None,
    lines_from: LinesFrom | None = None,
) -> Iterator[tuple[RawItem, ParsedRecord | list[ParsedRecord] | Exception]]:
    """Yield each raw item of a corpus file with what its format's parser made of it, or the
    error (RecordRejected: the record's fault; any other: an unforeseen one). With
    `lines_from`, a JSON lines file is read from there, in the format its whole read
    detected."""
    auto = source_format == "auto"
    fmt: str | None = source_format
    if lines_from is not None:
        items: Iterator[RawItem] = json_lines_from(file, lines_from, fs)
        fmt = lines_from.detected if auto else fmt
    else:
        items = iter_raw_items(file, fs)
    if auto and lines_from is None:
        detection, items = _detect_file_format(file, items)
        fmt = detection.format
        log.debug("%s: format %s", file, detection.summary())
        if stats is not None and file_ref is not None:
            stats.formats[file_ref] = detection.summary()
            stats.detected[file_ref] = fmt
    if fmt == "sillytavern":
        yield from _chat_log_items(items)
        return
    for item in items:
        if item.error is not None:
            yield item, item.error
            continue
        # Auto mode trusts a record's own shape over its file's (concatenated corpora mix them);
        # the file's format still judges records whose shape fits no format. A record in
        # its file's format is not detected again: that is nearly every record.
        own = fmt
        if auto and not (fmt and fits_format(item.value, fmt)):
            own = detect_format(item.value) or fmt
        parser = PARSERS.get(own or "")
        try:
            if parser is None:
                raise RecordRejected(
                    "wrong_types", f"record shape not recognised ({detect(item.value).refusal()})"
                )
            refuse_unsupported_media(item.value)
            parsed: ParsedRecord | list[ParsedRecord] | Exception = parser(item.value)
        except Exception as exc:
            parsed = exc
        yield item, parsed


def _chat_log_items(
    items: Iterator[RawItem],
) -> Iterator[tuple[RawItem, ParsedRecord | list[ParsedRecord] | Exception]]:
    """Yield a SillyTavern chat file as one record, keyed by its first line (the header, or
    a group chat's first message); a line that does not parse is yielded on its own and the
    chat is read without it."""
    first: RawItem | None = None
    lines: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if item.error is not None:
            yield item, item.error
            continue
        first = first or item
        lines.append((item.key, item.value))
    if first is None:
        return
    header = lines[0][1] if is_chat_header(lines[0][1]) else None
    try:
        parsed: ParsedRecord | Exception = parse_chat_log(header, lines[1:] if header else lines)
    except Exception as exc:
        parsed = exc
    yield first, parsed


def referenced_media(
    source: SourceConfig,
    recipe: Recipe,
    fs: SourceFS | None = None,
    lines_from: dict[str, LinesFrom] | None = None,
) -> list[str]:
    """Return the absolute locations (symlinks kept) of the media files a source's records
    name, sorted, missing ones included; found by parsing the records, no media read.

    Paths that `read_source` would refuse (outside the corpus folder, remote) are left
    out: no file of theirs is ever read. `lines_from` reads the files it names from there.
    """
    fs = fs or SourceFS.of(recipe)
    path = recipe.resolve(source.path)
    media_dir = recipe.resolve(source.media_dir) if source.media_dir else None
    found: set[str] = set()
    for file in corpus_files(path, set(characters_paths(source, recipe)), fs):
        root = MediaRoot(media_dir or dirname(file), source.allow_outside_root, fs)
        for _item, parsed in _parsed_items(
            file, source.format, fs, lines_from=(lines_from or {}).get(file)
        ):
            if isinstance(parsed, Exception):
                continue
            for one in parsed if isinstance(parsed, list) else [parsed]:
                for ref in [*one.images, *one.audios]:
                    # Only a bare path is read from disk (see load_media); inline bytes win.
                    if ref.path is None or ref.raw is not None:
                        continue
                    # A path the resolver refuses (or that cannot name a file at all, e.g.
                    # an embedded NUL byte) is the record's problem, quarantined when read.
                    try:
                        with unusable_path_rejected(ref.path):
                            found.add(root.named(ref.path))
                    except RecordRejected:
                        continue
    return sorted(found)


def _unforeseen(ctx: FileContext, item: RawItem, exc: Exception) -> QuarantineEntry:
    # A record that trips an unforeseen error costs that record, not the run; the
    # entry names the error so the bug stays visible in the quarantine file.
    log.warning("%s: reading raised", ctx.source_ref(item.key), exc_info=True)
    return _entry(ctx, item, RecordRejected("stage_error", f"{type(exc).__name__}: {exc}"))


def whole_read_format(file: str, fs: SourceFS) -> str | None:
    """Return the format a whole read of `file` in a source of format `auto` detects (from
    its first records), which a read of one of its ranges (`LinesFrom`) is given."""
    items = iter_raw_items(file, fs)
    try:
        return _detect_file_format(file, items)[0].format
    finally:
        items.close()


def _detect_file_format(file: str, items: Iterator[RawItem]) -> tuple[Detection, Iterator[RawItem]]:
    """Return the file's detection and the items again: arrow by storage, else the first of
    its first records whose whole shape some format fits (else why the first one fits none)."""
    if file.endswith(".arrow"):
        return Detection("arrow"), items
    seen = []
    first_miss: Detection | None = None
    found: Detection | None = None
    for item in items:
        seen.append(item)
        if item.error is None:
            detection = detect(item.value)
            if detection.format is not None:
                found = detection
                break
            first_miss = first_miss or detection
        if len(seen) >= DETECT_RECORDS:
            break
    return found or first_miss or Detection(None), itertools.chain(seen, items)


def _entry(ctx: FileContext, item: RawItem, exc: RecordRejected) -> QuarantineEntry:
    return QuarantineEntry(
        stage=STAGE,
        reason=exc.reason,
        message=exc.message,
        source=ctx.source.name,
        source_ref=ctx.source_ref(item.key),
        record_id=ctx.record_id(item.key),
        excerpt=item.excerpt,
    )
