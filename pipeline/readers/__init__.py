"""Corpus readers: every supported format in, canonical WORK records (or quarantine entries) out.

`read_source` streams one source of a recipe. The format is taken from the source's
`format:` or detected per file from its content (how it is stored, then the first record's
keys); `check_source_paths` refuses, before any work, a source that is not a regular file
or folder of them, or whose files no reader fits.

The names are imported on first use (`pipeline.readers.sources` holds them): a module that
needs only a light part (`files`, `source_fs`) imports the package without every parser,
Arrow and numpy, which an unchanged rerun never uses.
"""

from __future__ import annotations

from pipeline.record.lazy import lazy_exports

_EXPORTS = {
    "PARSERS": "pipeline.readers.sources",
    "LinesFrom": "pipeline.readers.files",
    "SourceReadStats": "pipeline.readers.sources",
    "check_source_paths": "pipeline.readers.sources",
    "detect_format": "pipeline.readers.sources",
    "read_source": "pipeline.readers.sources",
    "referenced_media": "pipeline.readers.sources",
    "source_files": "pipeline.readers.files",
    "source_input_files": "pipeline.readers.files",
    "whole_read_format": "pipeline.readers.sources",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("pipeline.readers", _EXPORTS)
