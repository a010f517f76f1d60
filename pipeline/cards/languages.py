"""Languages of a version, guessed from the writing systems of its message text.

A cheap heuristic, not a language model: letters are counted per Unicode script by a code
point table lookup over the Arrow string buffers, and a script with enough of the letters
names its usual language. The card says exactly that.
"""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pyarrow as pa

# Writing system -> language code reported for it. A script is not a language: Latin text
# is assumed to be English and Han text Chinese; the card says so.
SCRIPT_LANGUAGES = {
    "Latin": "en",
    "Han": "zh",
    "Hiragana": "ja",
    "Katakana": "ja",
    "Hangul": "ko",
    "Cyrillic": "ru",
    "Arabic": "ar",
    "Devanagari": "hi",
    "Greek": "el",
    "Hebrew": "he",
    "Thai": "th",
}
LANGUAGE_MIN_SHARE = 0.01  # a script must hold 1% of all letters to name a language


# Letter ranges of each script (main blocks only: a heuristic, not Unicode's Script property).
_SCRIPT_RANGES: dict[str, list[tuple[int, int]]] = {
    "Latin": [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F),
              (0x1E00, 0x1EFF), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)],
    "Han": [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)],
    "Hiragana": [(0x3041, 0x309F)],
    "Katakana": [(0x30A1, 0x30FA), (0x30FC, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9D)],
    "Hangul": [(0x1100, 0x11FF), (0x3131, 0x318E), (0xAC00, 0xD7A3)],
    "Cyrillic": [(0x400, 0x52F)],
    "Arabic": [(0x620, 0x64A), (0x671, 0x6D3)],
    "Devanagari": [(0x904, 0x939), (0x958, 0x961)],
    "Greek": [(0x386, 0x3FF), (0x1F00, 0x1FFF)],
    "Hebrew": [(0x5D0, 0x5F2)],
    "Thai": [(0xE01, 0xE30), (0xE40, 0xE46)],
}  # fmt: skip
_SCRIPTS = list(_SCRIPT_RANGES)
_HAN_SUPPLEMENTARY = (0x20000, 0x3134F)  # CJK extensions B and beyond
_bmp_table: np.ndarray | None = None


def _script_table() -> np.ndarray:
    """Return the script index (1-based; 0 = none) of every BMP code point."""
    global _bmp_table
    if _bmp_table is None:
        table = np.zeros(0x10000, dtype=np.uint8)
        for i, script in enumerate(_SCRIPTS, start=1):
            for lo, hi in _SCRIPT_RANGES[script]:
                table[lo : hi + 1] = i
        _bmp_table = table
    return _bmp_table


@functools.cache
def _ascii_ranges() -> dict[str, list[tuple[int, int]]]:
    """Return, per script with ASCII letters, its code point ranges within ASCII."""
    clipped = {
        script: [(lo, min(hi, 0x7F)) for lo, hi in ranges if lo <= 0x7F]
        for script, ranges in _SCRIPT_RANGES.items()
    }
    return {script: ranges for script, ranges in clipped.items() if ranges}


def _string_bytes(text: pa.Array) -> bytes:
    """Return the UTF-8 bytes of all strings of `text` back to back (no copy of offsets)."""
    if len(text) == 0:
        return b""
    if pa.types.is_large_string(text.type):
        offset_type = np.int64
    else:
        text = text.cast(pa.string())
        offset_type = np.int32
    _, offsets_buf, data_buf = text.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[
        text.offset : text.offset + len(text) + 1
    ]
    return data_buf[int(offsets[0]) : int(offsets[-1])].to_pybytes() if data_buf else b""


def count_scripts(text: pa.Array) -> Counter[str]:
    """Return how many letters of each script the strings hold, by code point table lookup."""
    data = _string_bytes(text)
    if data.isascii():
        # Counted by range compares on the bytes (~1 ns a byte), not a table lookup per
        # byte (~8 ns: the cards of 100,000 conversations cost the driver seconds).
        codes = np.frombuffer(data, dtype=np.uint8)
        found: Counter[str] = Counter()
        for script, ranges in _ascii_ranges().items():
            n = sum(
                int(np.count_nonzero((codes - np.uint8(lo)) <= np.uint8(hi - lo)))
                for lo, hi in ranges
            )
            if n:
                found[script] = n
        return found
    else:
        codes = np.frombuffer(data.decode("utf-8", "replace").encode("utf-32-le"), dtype=np.uint32)
        script_ids = _script_table()[np.minimum(codes, 0xFFFF)]
        han = (codes >= _HAN_SUPPLEMENTARY[0]) & (codes <= _HAN_SUPPLEMENTARY[1])
        script_ids = np.where(
            codes > 0xFFFF, np.where(han, _SCRIPTS.index("Han") + 1, 0), script_ids
        )
    counts = np.bincount(script_ids, minlength=len(_SCRIPTS) + 1)
    return Counter({s: int(n) for s, n in zip(_SCRIPTS, counts[1:], strict=True) if n})


def detect_languages(scripts: Counter[str]) -> list[str]:
    """Return language codes for the writing systems holding at least 1% of the letters."""
    total = sum(scripts.values())
    if not total:
        return []
    shares = {s: n / total for s, n in scripts.items()}
    kana = scripts["Hiragana"] + scripts["Katakana"]
    found: list[str] = []
    for script, code in SCRIPT_LANGUAGES.items():
        if shares.get(script, 0.0) < LANGUAGE_MIN_SHARE:
            continue
        # Japanese writes Han characters (kanji) among kana; only Han beyond that is Chinese.
        if script == "Han" and scripts["Han"] <= kana:
            continue
        if code not in found:
            found.append(code)
    return found
