"""verify: file digests, row digests and the content id by the rule of the manifest's format."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record.schema import RECORD_SCHEMA
from pipeline.store.manifest import MANIFEST_FORMAT, MANIFEST_FORMAT_V1, Manifest, shard_content_id
from pipeline.store.read import Store
from pipeline.store.shards import read_shard
from pipeline.store.verify import verify_version
from tests.pipeline.store.test_commit import _committer, _stage


def _published(tmp_path: Path) -> tuple[Store, Manifest]:
    staged, manifest = _stage(tmp_path, "r1")
    result = _committer(tmp_path).commit(staged, manifest)
    return Store(str(tmp_path / "store"), "ds"), result.manifest


def test_a_new_version_is_format_2_and_verifies_by_its_rows(tmp_path: Path) -> None:
    store, manifest = _published(tmp_path)
    assert manifest.format == MANIFEST_FORMAT
    assert all(s.row_digests and s.row_digests_sha256 for s in manifest.shards)
    report = verify_version(store, 1)
    assert report.ok
    # Shards, sidecars and the card.
    assert report.checked == 2 * len(manifest.shards) + 1


def test_verify_names_a_changed_row_by_its_id(tmp_path: Path) -> None:
    store, manifest = _published(tmp_path)
    shard = next(s for s in manifest.shards if s.rows > 1)
    path = os.path.join(store.version_dir(1), shard.path)
    table = read_shard(path)
    victim = table["id"][1].as_py()
    sources = pc.if_else(pc.equal(table["id"], victim), "edited", table["source"])
    edited = table.set_column(table.schema.get_field_index("source"), "source", sources)
    os.remove(path)  # the reader above keeps the old file mapped
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, RECORD_SCHEMA) as writer:
        writer.write_table(edited)
    report = verify_version(store, 1)
    problems = {(p.path, p.problem) for p in report.problems}
    assert (f"{shard.path}#{victim}", "row") in problems
    assert not any(
        p.problem == "row" and p.path != f"{shard.path}#{victim}" for p in report.problems
    )
    # The quick check a trainer makes still refuses the version: the file's hash differs.
    assert (shard.path, "sha256") in problems or (shard.path, "size") in problems


def test_an_edited_sidecar_changes_the_content_id_and_fails_verify(tmp_path: Path) -> None:
    store, manifest = _published(tmp_path)
    sidecar = os.path.join(store.version_dir(1), manifest.shards[0].row_digests)
    os.chmod(sidecar, 0o644)
    with open(sidecar, "r+b") as f:
        f.seek(10)
        f.write(b"X")
    problems = [p.problem for p in verify_version(store, 1).problems]
    assert problems == ["sha256"]


def test_a_format_1_manifest_still_verifies_by_its_shard_hashes(tmp_path: Path) -> None:
    store, manifest = _published(tmp_path)
    # A version written before row digests: no sidecars, the content id over shard files.
    old_shards = [
        s.model_copy(update={"row_digests": None, "row_digests_sha256": None})
        for s in manifest.shards
    ]
    old = manifest.model_copy(
        update={
            "format": MANIFEST_FORMAT_V1,
            "shards": old_shards,
            "content_id": shard_content_id(manifest.schema_sha256, [s.sha256 for s in old_shards]),
        }
    ).sealed()
    assert "row_digests" not in old.to_json_bytes().decode()
    os.chmod(store.manifest_path(1), 0o644)
    Path(store.manifest_path(1)).write_bytes(old.to_json_bytes())
    reread = store.manifest(1)
    assert reread.format == MANIFEST_FORMAT_V1 and reread.digest_matches()
    assert verify_version(store, 1).ok
    assert store.checked_manifest(1).content_id == old.content_id
    # Its rule still sees an edited shard hash in the content id.
    tampered = old.model_copy(update={"content_id": "0" * 64}).sealed()
    Path(store.manifest_path(1)).write_bytes(tampered.to_json_bytes())
    assert [p.problem for p in verify_version(store, 1).problems] == ["content_id"]
