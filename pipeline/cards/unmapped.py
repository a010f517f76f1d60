"""The card's note on corpus fields the dataset does not carry (`unmapped_fields` per source).

Kept apart from the rest of the card: it is one small table built from one manifest key.
"""

from __future__ import annotations

from pipeline.cards.markdown import md_cell, md_code, md_table
from pipeline.store.manifest import Manifest


def unmapped_fields_section(manifest: Manifest) -> str:
    """Return the markdown paragraph and table of unmapped fields, or "" when none were seen."""
    rows = [
        [md_cell(source), md_code(field), count]
        for source, fields in sorted(manifest.unmapped_fields.items())
        for field, count in sorted(fields.items())
    ]
    if not rows:
        return ""
    return (
        "\n\nFields of the source files that no column of this dataset carries (counted, not "
        "silently dropped):\n\n" + md_table(["source", "field", "records"], rows)
    )
