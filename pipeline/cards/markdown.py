"""Markdown for the cards: table cells and code spans that user text cannot break."""

from __future__ import annotations

import html
import os
import posixpath
from typing import Any


def md_cell(value: Any, limit: int = 120) -> str:
    """Return `value` as text safe inside a markdown table cell (one line, no markup)."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # newlines and tabs would end the row
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = html.escape(text, quote=False)
    for ch in "\\`*_[]|#":
        text = text.replace(ch, "\\" + ch)
    return text


def md_code(value: str, limit: int = 200) -> str:
    """Return `value` as an inline code span safe inside a table cell."""
    text = " ".join(value.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # A pipe ends the cell even inside code in GFM unless escaped; a backtick ends the span.
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """Return a GFM table; cells given as str are used as is, others are formatted."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [c if isinstance(c, str) else _number(c) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else md_cell(value)


def portable_path(path: str | None) -> str:
    """Return a path fit for a card: relative paths as given, absolute ones by file name."""
    if not path:
        return ""
    if "://" in path or os.path.isabs(path):
        return posixpath.basename(path.rstrip("/")) or path
    return path


def bucket_labels(bounds: tuple[int, ...]) -> list[str]:
    """Return column labels for histogram buckets ending at `bounds` (and one beyond)."""
    labels, low = [], 0
    for b in bounds:
        labels.append(f"{low + 1}–{b}" if low + 1 < b else f"≤{b}")
        low = b
    labels.append(f">{bounds[-1]}")
    labels[0] = f"≤{bounds[0]}"
    return labels
