"""Stable identities and per-record seeds, derived by hashing (never from worker state)."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def _digest(*parts: Any) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        data = str(part).encode("utf-8")
        # Length-prefix each part so ("ab", "c") and ("a", "bc") never collide.
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def original_id(source: str, source_key: str) -> str:
    """Return the id of an original record: a hash of its source name and source key."""
    return _digest("original", source, source_key).hex()[:32]


def variant_id(parent_id: str, recipe_hash: str, copy: int) -> str:
    """Return the id of an augmented variant of `parent_id`."""
    return _digest("variant", parent_id, recipe_hash, copy).hex()[:32]


def record_seed(seed: int, record_id: str, copy: int, modality: str) -> int:
    """Return the 64-bit seed for one record's copy and modality."""
    return int.from_bytes(_digest("seed", seed, record_id, copy, modality)[:8], "little")


# Dataset names become folder names in the store and the cards folder: a letter or digit
# first, so "." and ".." (and hidden folders) can never name a dataset.
DATASET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


# One encoder for every call: json.dumps builds a new one per call when given options.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """Return `value` as JSON with sorted keys and no whitespace, for hashing and storage."""
    return _CANONICAL.encode(value)


def new_run_id() -> str:
    """Return a sortable run id (data jobs and training runs alike): UTC time to the
    microsecond + random suffix. The microseconds order two runs of the same second (the
    record cache and gc take the newest run by its id)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def file_sha256(path: str, chunk_size: int = 1 << 20) -> str:
    """Return the sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def media_digests(column: pa.ChunkedArray) -> list[list[str]]:
    """Return, per row of a media list column, the sha256 of each item's bytes (a null
    item's bytes hash as b"").

    The items are hashed straight from the binary child's offsets and data buffers
    (zero-copy memoryview slices): no scalar or bytes object per item."""
    rows: list[list[str]] = []
    # Chunk by chunk: combining them would copy every media byte once more.
    for array in column.chunks:
        # List offsets index the list's values; `field` applies the struct's own offset.
        offsets = array.offsets.to_numpy(zero_copy_only=False).tolist()
        binary = array.values.field("bytes")
        digests = [hashlib.sha256(item).hexdigest() for item in _binary_items(binary)]
        rows.extend(digests[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True))
    return rows


def _binary_items(binary: pa.Array) -> list[memoryview]:
    """Return each value of a binary array as a zero-copy view of its data buffer (a null
    as an empty view)."""
    # Imported here: ids are needed where no Arrow data is (a recipe's name, an unchanged
    # rerun's check), and numpy with pyarrow is a tenth of a second of start-up.
    import numpy as np
    import pyarrow as pa

    n = len(binary)
    if n == 0:
        return []
    _, offsets_buffer, data_buffer = binary.buffers()
    width = np.int64 if pa.types.is_large_binary(binary.type) else np.int32
    ends = np.frombuffer(offsets_buffer, dtype=width)[binary.offset : binary.offset + n + 1]
    data = memoryview(data_buffer if data_buffer is not None else b"")
    starts, stops = ends[:-1].tolist(), ends[1:].tolist()
    items = [data[a:b] for a, b in zip(starts, stops, strict=True)]
    if binary.null_count:
        empty = data[0:0]
        valid = binary.is_valid().to_numpy(zero_copy_only=False)
        items = [item if ok else empty for item, ok in zip(items, valid.tolist(), strict=True)]
    return items
