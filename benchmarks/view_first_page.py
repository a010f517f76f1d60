"""How long `roleforge view` takes to answer a big version's pages (issue 26: a 100,000-row
version's first page in under 2 s on 2 cores).

Writes a text-only version of N rows in the published layout (Parquet, no compression, a
row group per 256 rows, shards cut at 64 MB, rows in the order made, not id order, as the
writer leaves them) and a manifest, then starts the real server in this process and times
GET over HTTP, each a fresh site (no cache warm): the first rows page, a page deep in the
version by its next-page position, a text search that matches one row near the end (a
scan of every turn), a record by id (found by the row-digest sidecars), and the versions
list.

    .venv/bin/python benchmarks/view_first_page.py [--rows 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import threading
import time
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.record.ids import original_id
from pipeline.record.schema import RECORD_SCHEMA
from pipeline.store.fs import LocalFS
from pipeline.store.manifest import (
    AugmentationSummary,
    CodeVersion,
    DedupSummary,
    Manifest,
    QuarantineSummary,
    ShardEntry,
    content_id,
    schema_sha256,
)
from pipeline.store.read import Store
from pipeline.store.row_digest import add_row_digests
from pipeline.view import ViewServer, ViewSite

NAME = "big"
ROW_GROUP = 256
SHARD_BYTES = 64 << 20
NEEDLE = "zebra-violin"


def _table(ids: list[str], split: str, needle_at: int | None) -> pa.Table:
    n = len(ids)
    messages = [
        [
            {"role": "user", "name": "Kai", "content": f"Tell me about day {i} at the harbour."},
            {
                "role": "assistant",
                "name": None,
                "content": f"Day {i}: the gulls circled while the nets dried in the sun. "
                + ("The fog rolled in at dusk. " * 3)
                + (NEEDLE if i == needle_at else ""),
            },
        ]
        for i in range(n)
    ]
    character = {"name": "Marlowe", "profile": "A lighthouse keeper.", "greeting": None}
    columns = {
        "id": ids,
        "parent_id": [None] * n,
        "source": ["sample"] * n,
        "split": [split] * n,
        "character": [character] * n,
        "messages": messages,
        "images": [[]] * n,
        "audios": [[]] * n,
        "augmentation": [None] * n,
        "references": [None] * n,
        "quality": [None] * n,
    }
    return pa.Table.from_pydict(columns, schema=RECORD_SCHEMA)


def write_big_version(root: str, rows: int) -> tuple[Store, str]:
    """Write a committed text-only version of `rows` rows; return it and the needle's id."""
    store = Store(root, NAME)
    folder = store.version_dir(1)
    os.makedirs(folder, exist_ok=True)
    counts = {"train": rows * 8 // 10, "validation": rows // 10}
    counts["test"] = rows - counts["train"] - counts["validation"]
    shards, needle_id = [], ""
    start = 0
    for split, n in counts.items():
        ids = [original_id("sample", f"{split}-{i}") for i in range(start, start + n)]
        start += n
        needle_at = n - 3 if split == "test" else None
        if needle_at is not None:
            needle_id = ids[needle_at]
        table = _table(ids, split, needle_at)
        per_row = max(1, table.nbytes // max(1, n))
        per_shard = max(ROW_GROUP, SHARD_BYTES // per_row)
        count = -(-n // per_shard)
        for k in range(count):
            name = f"{split}-{k:05d}-of-{count:05d}.parquet"
            path = os.path.join(folder, name)
            part = table.slice(k * per_shard, per_shard)
            with pq.ParquetWriter(
                path, RECORD_SCHEMA, compression="none", use_dictionary=False
            ) as writer:
                writer.write_table(part, row_group_size=ROW_GROUP)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            shards.append(
                ShardEntry(
                    path=name,
                    split=split,
                    rows=part.num_rows,
                    bytes=os.path.getsize(path),
                    sha256=digest,
                )
            )
    schema_hash = schema_sha256(RECORD_SCHEMA)
    shards, rows = add_row_digests(folder, shards, LocalFS())
    manifest = Manifest(
        name=NAME,
        version=1,
        run_id="bench",
        created_at="2026-12-06T00:00:00Z",
        inputs=[],
        recipe={"name": NAME, "sources": [{"name": "sample"}]},
        recipe_hash="0" * 64,
        code_version=CodeVersion(),
        counts={},
        quarantine=QuarantineSummary(),
        augmentation=AugmentationSummary(),
        dedup=DedupSummary(),
        splits=counts,
        originals=counts,
        shards=shards,
        schema_sha256=schema_hash,
        content_id=content_id(schema_hash, rows),
    ).sealed()
    with open(store.manifest_path(1), "wb") as f:
        f.write(manifest.to_json_bytes())
    return store, needle_id


def _timed_get(root: str, path: str) -> tuple[float, int, int]:
    """Return (seconds, status, bytes) of one GET against a fresh server and site."""
    server = ViewServer(ViewSite(root), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        started = time.perf_counter()
        with urllib.request.urlopen(server.url.rstrip("/") + path) as response:
            body = response.read()
            status = response.status
        return time.perf_counter() - started, status, len(body)
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        store, needle = write_big_version(root, args.rows)
        built = time.perf_counter() - started
        manifest = store.manifest(1)
        print(f"wrote {args.rows:,} rows in {len(manifest.shards)} shards in {built:.1f} s")
        # A deep page: the position half way through the first shard.
        from pipeline.view.rows import RowFilter, VersionRows

        rows = VersionRows(store, manifest)
        page = rows.page(RowFilter(), None, 25)
        deep = f"0.{manifest.shards[0].rows // 2}"
        cases = {
            "first_page": f"/d/{NAME}/v1/",
            "first_page_test_split": f"/d/{NAME}/v1/?split=test",
            "deep_page_by_key": f"/d/{NAME}/v1/?after={deep}&page=2",
            "text_search_whole_version": f"/d/{NAME}/v1/?q={NEEDLE}",
            "record_by_id": f"/d/{NAME}/v1/r/{needle}",
            "versions": f"/d/{NAME}/",
        }
        figures = {"rows": args.rows, "shards": len(manifest.shards), "cpus": os.cpu_count()}
        assert page.rows, "the version has rows"
        for label, path in cases.items():
            seconds, status, size = _timed_get(root, path)
            figures[label + "_s"] = round(seconds, 3)
            print(f"{label:28s} {seconds:7.3f} s  HTTP {status}  {size:,} bytes")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
