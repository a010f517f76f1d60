"""The `quality` column: how a stage adds a flag or sets a field without touching other columns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from pipeline.record.schema import QUALITY_TYPE


def quality_values(table: pa.Table) -> list[dict[str, Any]]:
    """Return the quality struct of each row as a dict (an empty one where it is null)."""
    if "quality" not in table.column_names:
        return [_blank() for _ in range(table.num_rows)]
    return [{**_blank(), **q} if q else _blank() for q in table["quality"].to_pylist()]


def with_quality(table: pa.Table, values: list[dict[str, Any]]) -> pa.Table:
    """Return `table` with its quality column replaced by `values` (one dict per row)."""
    return _with_column(table, pa.array(values, QUALITY_TYPE))


def with_fields(table: pa.Table, fields: Mapping[str, pa.Array]) -> pa.Table:
    """Return `table` with the quality fields named in `fields` replaced by those arrays
    (one value per row) and no null quality struct left. Where every row has its struct
    (the checks before gave each one), the other fields' arrays are kept as they are
    instead of going through Python dicts and back."""
    if not _complete(table):
        values = quality_values(table)
        for name, array in fields.items():
            for row, value in enumerate(array.to_pylist()):
                values[row][name] = value
        return with_quality(table, values)
    column = table["quality"].combine_chunks()
    children = [fields.get(name, column.field(name)) for name, _ in _FIELDS]
    return _with_column(table, pa.StructArray.from_arrays(children, fields=list(QUALITY_TYPE)))


def add_flags(table: pa.Table, flags: Mapping[int, list[tuple[str, str]]]) -> pa.Table:
    """Return `table` with (code, note) pairs added to the rows given by index (and no null
    quality struct left: a record a quality stage saw always has its flags list)."""
    if not flags and _complete(table):
        return table
    values = quality_values(table)
    for row, found in flags.items():
        for code, note in found:
            if code not in values[row]["flags"]:
                values[row]["flags"].append(code)
            values[row]["notes"].append(f"{code}: {note}")
    return with_quality(table, values)


def set_fields(table: pa.Table, field: str, by_row: Mapping[int, Any]) -> pa.Table:
    """Return `table` with the quality field `field` set on the rows given by index."""
    if not by_row and _complete(table):
        return table
    values = quality_values(table)
    for row, value in by_row.items():
        values[row][field] = value
    return with_quality(table, values)


def inherited(parent: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return a variant's quality struct: its parent's findings (flags, notes, near-duplicate
    cluster, language), without the parent's token count (the ledger counts the variant's
    own tokens); None when the parent has none (quality off)."""
    if parent is None:
        return None
    return {**_blank(), **parent, "tokens": None, "tokens_hash": None}


# (name, whether a list) of each QUALITY_TYPE field: `_blank` runs per row of every stage
# that rewrites the column, and asking Arrow each field's type per row cost ~2.5 us of it.
_FIELDS = tuple((f.name, pa.types.is_list(f.type)) for f in QUALITY_TYPE)


def _blank() -> dict[str, Any]:
    return {name: [] if is_list else None for name, is_list in _FIELDS}


def _complete(table: pa.Table) -> bool:
    return "quality" in table.column_names and table["quality"].null_count == 0


def _with_column(table: pa.Table, column: pa.Array) -> pa.Table:
    if "quality" in table.column_names:
        return table.set_column(table.schema.get_field_index("quality"), "quality", column)
    return table.append_column(pa.field("quality", QUALITY_TYPE), column)
