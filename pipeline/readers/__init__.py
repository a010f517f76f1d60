"""Corpus readers: every supported format in, canonical WORK records (or quarantine entries) out.

`read_source` streams one source of a recipe. The format is taken from the source's
`format:` or detected per file (extension, then the first record's keys).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.readers.arrow import parse_canonical
from pipeline.readers.assemble import FileContext, ParsedRecord, assemble_record, relative_ref
from pipeline.readers.character import parse_mmrole, parse_pippa
from pipeline.readers.detect import detect_format
from pipeline.readers.files import RawItem, corpus_files, iter_raw_items
from pipeline.readers.llamafactory import parse_llamafactory, parse_sharegpt
from pipeline.readers.openai import parse_openai
from pipeline.recipe import Recipe, SourceConfig
from pipeline.record.characters import BadCharacterLine, CharacterBook, read_character_lines
from pipeline.record.config import RecipeError
from pipeline.record.media import MediaRoot
from pipeline.record.rejection import QuarantineEntry, RecordRejected

__all__ = [
    "PARSERS",
    "check_source_paths",
    "detect_format",
    "read_source",
    "source_input_files",
]

log = logging.getLogger(__name__)
STAGE = "ingest"

PARSERS: dict[str, Callable[[dict[str, Any]], ParsedRecord]] = {
    "llamafactory": parse_llamafactory,
    "sharegpt": parse_sharegpt,
    "openai": parse_openai,
    "pippa": parse_pippa,
    "mmrole": parse_mmrole,
    "arrow": parse_canonical,
}


def check_source_paths(recipe: Recipe) -> None:
    """Raise RecipeError naming the key of any source path or characters file that is missing."""
    for i, source in enumerate(recipe.sources):
        path = recipe.resolve(source.path)
        if not os.path.exists(path):
            raise RecipeError(f"sources.{i}.path: no such file or folder: {path}")
        if os.path.isdir(path) and not corpus_files(path):
            raise RecipeError(f"sources.{i}.path: folder holds no corpus files: {path}")
        if source.characters and not os.path.isfile(recipe.resolve(source.characters)):
            raise RecipeError(
                f"sources.{i}.characters: no such file: {recipe.resolve(source.characters)}"
            )


def source_input_files(source: SourceConfig, recipe: Recipe) -> list[str]:
    """Return the absolute paths of a source's input files (dialogue files + characters file), sorted."""
    characters = _characters_path(source, recipe)
    files = corpus_files(recipe.resolve(source.path), exclude={characters} if characters else None)
    if characters:
        files.append(characters)
    return sorted(files)


def read_source(source: SourceConfig, recipe: Recipe) -> Iterator[dict[str, Any] | QuarantineEntry]:
    """Yield canonical WORK records of one source, or a QuarantineEntry for each that fails to read.

    Records come with media bytes loaded, `split`/`parent_id`/`augmentation` None, and
    `source_ref` = "<file relative to the recipe folder>:<line or index>" (JSONL lines count
    from 1, array and table rows from 0). Files are streamed one record at a time.
    """
    path = recipe.resolve(source.path)
    source_folder = path if os.path.isdir(path) else os.path.dirname(path)
    characters = _characters_path(source, recipe)
    book = CharacterBook(path=characters)
    if characters:
        yield from _load_book(book, source, recipe)
    for file in corpus_files(path, exclude={characters} if characters else None):
        ctx = FileContext(
            source=source,
            limits=recipe.limits,
            book=book,
            file_ref=relative_ref(file, recipe.base_dir),
            file_key=relative_ref(file, source_folder),
            media_root=MediaRoot(os.path.dirname(file), source.allow_outside_root),
        )
        yield from _read_file(file, ctx)


def _characters_path(source: SourceConfig, recipe: Recipe) -> str | None:
    return os.path.abspath(recipe.resolve(source.characters)) if source.characters else None


def _load_book(
    book: CharacterBook, source: SourceConfig, recipe: Recipe
) -> Iterator[QuarantineEntry]:
    file_ref = relative_ref(book.path, recipe.base_dir)
    for lineno, entry in read_character_lines(book.path):
        if isinstance(entry, BadCharacterLine):
            # A persona line that cannot be used leaves through quarantine like any bad record.
            yield QuarantineEntry(
                stage=STAGE,
                reason=entry.reason,
                message=f"characters file: {entry.message}",
                source=source.name,
                source_ref=f"{file_ref}:{lineno}",
            )
        else:
            book.by_name[entry["name"]] = entry
    log.debug("source %s: %d characters from %s", source.name, len(book.by_name), book.path)


def _read_file(file: str, ctx: FileContext) -> Iterator[dict[str, Any] | QuarantineEntry]:
    items: Iterator[RawItem] = iter_raw_items(file)
    auto = ctx.source.format == "auto"
    fmt: str | None = ctx.source.format
    if auto:
        fmt, items = _detect_file_format(file, items)
        log.debug("%s: format %s", ctx.file_ref, fmt)
    for item in items:
        if item.error is not None:
            yield _entry(ctx, item, item.error)
            continue
        # Auto mode trusts a record's own shape over its file's (concatenated corpora mix them);
        # the file's format still judges records whose shape is not recognisable.
        parser = PARSERS.get((detect_format(item.value) if auto else None) or fmt or "")
        try:
            if parser is None:
                keys = ", ".join(sorted(map(str, item.value))[:8])
                raise RecordRejected(
                    "wrong_types",
                    f"record shape not recognised (keys: {keys}); set format: on the source",
                )
            record = assemble_record(parser(item.value), item.key, ctx)
        except RecordRejected as exc:
            yield _entry(ctx, item, exc)
            continue
        except Exception as exc:
            # A record that trips an unforeseen error costs that record, not the run; the
            # entry names the error so the bug stays visible in the quarantine file.
            log.warning("%s: reading raised", ctx.source_ref(item.key), exc_info=True)
            yield _entry(ctx, item, RecordRejected("stage_error", f"{type(exc).__name__}: {exc}"))
            continue
        yield record


def _detect_file_format(
    file: str, items: Iterator[RawItem]
) -> tuple[str | None, Iterator[RawItem]]:
    """Return the file's format and the items again: by extension, else the first known shape."""
    if file.endswith(".arrow"):
        return "arrow", items
    seen = []
    fmt = None
    for item in items:
        seen.append(item)
        if item.error is None and (fmt := detect_format(item.value)) is not None:
            break
    return fmt, itertools.chain(seen, items)


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
