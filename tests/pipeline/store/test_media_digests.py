"""Media digests hashed from Arrow buffers equal those of each item's Python bytes."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from pipeline.record.ids import canonical_json, media_digests
from pipeline.record.schema import MEDIA_TYPE
from pipeline.store.row_digest import row_digests
from tests.fixtures.media import audio_bytes, image_bytes

MEDIA_LIST = pa.list_(MEDIA_TYPE)
IMAGE, AUDIO = image_bytes("PNG", 16), audio_bytes("WAV", 0.05)
# Per row: images, audios. Null lists, empty lists, null and empty bytes, several items.
ROWS = [
    ([{"bytes": IMAGE, "path": "a.png"}], [{"bytes": AUDIO, "path": "a.wav"}]),
    (None, []),
    ([], None),
    ([{"bytes": None, "path": "gone.png"}, {"bytes": b"", "path": "empty.png"}], []),
    ([{"bytes": image_bytes("JPEG", 8, 90), "path": None}, {"bytes": IMAGE, "path": "b"}], None),
    ([], [{"bytes": AUDIO[:100], "path": "c.wav"}, {"bytes": AUDIO, "path": "d.wav"}]),
]


def _reference(values: list) -> list[list[str]]:
    """The digests as they were made before: one Python bytes object per item."""
    return [
        [hashlib.sha256(item["bytes"] or b"").hexdigest() for item in row or []] for row in values
    ]


def _column(index: int) -> pa.ChunkedArray:
    # Three chunks: the second a slice of a list (offsets not from 0), the third over a
    # slice of its struct values (the struct's offset is not 0 either).
    values = [row[index] for row in ROWS]
    whole = pa.array(values, MEDIA_LIST)
    items = pa.concat_arrays([whole.values.slice(0, 1), whole.values]).slice(1)
    shifted = pa.ListArray.from_arrays(whole.offsets, items, mask=whole.is_null())
    assert shifted.values.offset == 1
    return pa.chunked_array(
        [whole.slice(0, 2), pa.array(values[1:] + values, MEDIA_LIST).slice(1), shifted]
    )


def test_media_digests_from_buffers_equal_those_of_each_items_bytes() -> None:
    for index in (0, 1):
        column = _column(index)
        expected = _reference(column.to_pylist())
        assert media_digests(column) == expected
        assert media_digests(pa.chunked_array([column.combine_chunks()])) == expected
        for start in range(len(column)):
            assert media_digests(column.slice(start, 2)) == expected[start : start + 2]


def test_row_digests_hash_media_items_by_path_and_the_sha256_of_their_bytes() -> None:
    table = pa.table(
        {
            "id": [str(i) for i in range(len(ROWS))],
            "images": _column(0)[:6],
            "audios": _column(1)[:6],
        }
    )
    expected = []
    for row in table.to_pylist():
        for name in ("images", "audios"):
            row[name] = [
                {"path": item["path"], "sha256": hashlib.sha256(item["bytes"] or b"").hexdigest()}
                for item in row[name] or []
            ]
        expected.append(hashlib.sha256(canonical_json(row).encode()).hexdigest())
    assert row_digests(table) == expected
