"""The character card inside a PNG: its JSON, base64-encoded in a tEXt (or uncompressed
iTXt) chunk named `ccv3` (chara_card_v3, preferred) or `chara`.

Apart from `tavern.py` (which maps a card's JSON) because the file reader opens PNG cards
while `tavern.py` builds on the record assembly that itself uses the file reader.
"""

from __future__ import annotations

import base64
import binascii
import struct

from pipeline.readers.source_fs import LOCAL, SourceFS
from pipeline.record.rejection import RecordRejected

# Card chunks are small; a PNG whose text chunks exceed this is refused, not read on.
MAX_CHUNK_BYTES = 32 * 1024 * 1024


def card_json_from_png(path: str, fs: SourceFS = LOCAL) -> str:
    """Return the card JSON text embedded in a PNG (`ccv3` preferred over `chara`)."""
    chunks: dict[str, bytes] = {}
    with fs.open(path) as f:
        f.read(8)
        while True:
            header = f.read(8)
            if len(header) < 8:
                break
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                break
            if kind not in (b"tEXt", b"iTXt"):
                f.seek(length + 4, 1)
                continue
            if length > MAX_CHUNK_BYTES:
                raise RecordRejected("media_too_large", f"a PNG text chunk has {length} bytes")
            body = f.read(length)
            f.read(4)  # CRC
            keyword, _, rest = body.partition(b"\0")
            if kind == b"iTXt":
                # compression flag, method, language\0, translated keyword\0, text
                if rest[:1] != b"\0":
                    continue  # compressed iTXt: not how any card spec writes the card
                rest = rest[2:].split(b"\0", 2)[-1]
            chunks[keyword.decode("latin-1").lower()] = rest
    payload = chunks.get("ccv3") or chunks.get("chara")
    if payload is None:
        raise RecordRejected(
            "wrong_types", "the PNG holds no character card (no tEXt chunk 'ccv3' or 'chara')"
        )
    try:
        return base64.b64decode(payload, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise RecordRejected("bad_data_uri", f"the card chunk is not base64 JSON: {exc}") from None
