"""The card's note on corpus fields the dataset does not carry (`unmapped_fields` per source).

Kept apart from the rest of the card: it is one small table built from one manifest key.
"""

from __future__ import annotations

from typing import Any


def unmapped_fields_section(manifest: dict[str, Any]) -> str:
    """Return the markdown paragraph and table of unmapped fields, or "" when none were seen."""
    per_source = manifest.get("unmapped_fields") or {}
    rows = [
        (source, field, count)
        for source, fields in sorted(per_source.items())
        for field, count in sorted((fields or {}).items())
    ]
    if not rows:
        return ""
    lines = [
        "Fields of the source files that no column of this dataset carries (counted, not "
        "silently dropped):",
        "",
        "| source | field | records |",
        "|---|---|---|",
    ]
    lines += [f"| {_cell(s)} | `{_cell(f)}` | {n} |" for s, f, n in rows]
    return "\n\n" + "\n".join(lines)


def _cell(value: str) -> str:
    return " ".join(str(value).split()).replace("|", "\\|").replace("`", "'")[:120]
