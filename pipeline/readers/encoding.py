"""Which Unicode encoding a text corpus file is written in, and its text as UTF-8.

JSON is UTF-8 by standard (RFC 8259), but Windows tools save UTF-16 ("Unicode") files, with
or without a byte order mark, and some exporters add a UTF-8 BOM. Every text format is read
through here: a UTF-8 BOM is dropped, UTF-16 and UTF-32 are recognised from their BOM or
from the NUL bytes around the first (ASCII) character, as RFC 4627 describes, and decoded.
"""

from __future__ import annotations

import codecs

UTF8 = "utf-8"
UTF8_BOM = codecs.BOM_UTF8
# Longest first: UTF-32-LE's BOM begins with UTF-16-LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def sniff_encoding(head: bytes) -> str:
    """Return the codec of a file from its first bytes: utf-8 unless UTF-16/32 is certain.

    A BOM counts only when the NUL pattern after it agrees, so a UTF-8 line that happens to
    start with the bytes FF FE (a broken record) is not mistaken for a UTF-16 file.
    """
    for bom, codec in _BOMS:
        if head.startswith(bom):
            rest = head[len(bom) : len(bom) + 4]
            return codec if len(rest) < 4 or _nul_pattern(rest) == codec else UTF8
    return _nul_pattern(head[:4]) or UTF8


def _nul_pattern(first: bytes) -> str | None:
    if len(first) < 4:
        return None
    nul = tuple(b == 0 for b in first)
    return {
        (True, True, True, False): "utf-32-be",
        (False, True, True, True): "utf-32-le",
        (True, False, True, False): "utf-16-be",
        (False, True, False, True): "utf-16-le",
    }.get(nul)


def strip_bom(text: str) -> str:
    """Return `text` without a leading byte order mark."""
    return text[1:] if text.startswith("\ufeff") else text


def decode_text(data: bytes) -> str:
    """Return the text of a whole small file (a persona) in whichever encoding it is in;
    undecodable UTF-8 bytes become U+FFFD."""
    codec = sniff_encoding(data[:8])
    return strip_bom(data.decode(codec, errors="replace"))
