"""Sources on an object store: a corpus in a bucket reads, pins and publishes as it does on disk."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from pipeline.execution.provenance import input_entries, unchanged_inputs
from pipeline.readers import check_source_paths, read_source, source_files
from pipeline.readers.source_fs import SourceFS
from pipeline.record.config import RecipeError
from pipeline.record.rejection import QuarantineEntry
from pipeline.store.read import Store
from pipeline.store.shards import read_shard_batches
from pipeline.store.verify import verify_version
from tests.fixtures.corpus import write_jsonl
from tests.fixtures.media import image_bytes
from tests.fixtures.object_store import put_object, upload_folder
from tests.pipeline.execution.datajob_corpus import make_recipe, write_corpus


def _bucket(s3_store: str) -> str:
    return s3_store.split("/")[2]


@pytest.fixture
def corpus(s3_store: str, tmp_path: Path) -> dict[str, Any]:
    """The data-job corpus on disk and the same files in the bucket."""
    folder = tmp_path / "corpus"
    write_corpus(folder)
    return {
        "folder": folder,
        "uri": upload_folder(folder, f"s3://{_bucket(s3_store)}/corpora/tiny"),
        "store": s3_store,
    }


def _remote_source(uri: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "tiny",
            "path": f"{uri}/dialogues.jsonl",
            "characters": f"{uri}/characters.jsonl",
            **fields,
        }
    ]


def _read(recipe: Any) -> tuple[list[dict[str, Any]], list[QuarantineEntry]]:
    records, rejected = [], []
    for item in read_source(recipe.sources[0], recipe):
        (rejected if isinstance(item, QuarantineEntry) else records).append(item)
    return records, rejected


def _without_ref(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "source_ref"}


def test_a_source_in_a_bucket_reads_the_records_it_reads_from_disk(
    corpus: dict[str, Any],
) -> None:
    here = make_recipe(corpus["folder"])
    there = make_recipe(corpus["folder"], sources=_remote_source(corpus["uri"]))
    local_records, local_rejected = _read(here)
    remote_records, remote_rejected = _read(there)
    # 24 dialogues, 2 duplicates and the corrupt image (validation rejects it, not reading)
    assert len(local_records) == 27
    assert any(r["images"] and r["images"][0]["bytes"] for r in remote_records)
    # Same ids (the key is relative to the source's folder), same turns, same media bytes.
    assert [_without_ref(r) for r in remote_records] == [_without_ref(r) for r in local_records]
    assert remote_records[0]["source_ref"] == f"{corpus['uri']}/dialogues.jsonl:1"
    assert [(e.reason, e.record_id) for e in remote_rejected] == [
        (e.reason, e.record_id) for e in local_rejected
    ]
    assert [e.reason for e in remote_rejected] == ["missing_media"]


def test_a_folder_in_a_bucket_is_a_source_of_its_corpus_files(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    write_jsonl(extra / "more" / "b.jsonl", [{"x": 1}])
    write_jsonl(extra / "_scratch" / "c.jsonl", [{"x": 1}])  # `_` folders are skipped
    (extra / "notes.txt").write_text("not a corpus file")
    uri = upload_folder(extra, corpus["uri"])
    recipe = make_recipe(corpus["folder"], sources=[{"name": "tiny", "path": uri}])
    files = source_files(recipe.sources[0], recipe)
    assert files == sorted(
        f"{uri}/{name}" for name in ("characters.jsonl", "dialogues.jsonl", "more/b.jsonl")
    )


def test_a_missing_object_is_named_before_any_work(corpus: dict[str, Any]) -> None:
    recipe = make_recipe(
        corpus["folder"], sources=[{"name": "tiny", "path": f"{corpus['uri']}/nothing.jsonl"}]
    )
    with pytest.raises(RecipeError, match=r"sources\.0\.path: no such file or folder: s3://"):
        check_source_paths(recipe)
    check_source_paths(make_recipe(corpus["folder"], sources=_remote_source(corpus["uri"])))


def test_a_media_path_that_leaves_the_sources_prefix_is_refused(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    bucket = _bucket(corpus["store"])
    put_object(f"s3://{bucket}/corpora/secret.png", image_bytes("PNG", 8, 1))
    escape = tmp_path / "escape"
    write_jsonl(
        escape / "d.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "<image> look"},
                    {"role": "assistant", "content": "I see."},
                ],
                "images": [path],
            }
            for path in ("../secret.png", "/etc/hostname")
        ],
    )
    uri = upload_folder(escape, f"s3://{bucket}/corpora/escape")
    recipe = make_recipe(corpus["folder"], sources=[{"name": "e", "path": f"{uri}/d.jsonl"}])
    records, rejected = _read(recipe)
    assert records == []
    assert [e.reason for e in rejected] == ["media_outside_root", "media_outside_root"]
    assert "outside the corpus folder" in rejected[0].message
    assert "local path" in rejected[1].message


def test_inputs_in_a_bucket_are_pinned_by_uri_and_a_changed_object_is_seen(
    corpus: dict[str, Any],
) -> None:
    here = make_recipe(corpus["folder"])
    there = make_recipe(corpus["folder"], sources=_remote_source(corpus["uri"]))
    local, remote = input_entries(here), input_entries(there)
    assert [(e.kind, e.sha256, e.bytes) for e in remote] == [
        (e.kind, e.sha256, e.bytes) for e in local
    ]
    assert {e.path for e in remote} == {f"{corpus['uri']}/{e.path}" for e in local}
    assert unchanged_inputs(there, remote)
    put_object(f"{corpus['uri']}/images/0.png", image_bytes("PNG", 8, 99))
    assert not unchanged_inputs(there, remote)


def test_a_source_fs_carries_its_endpoint_and_keys_to_another_process(
    corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = make_recipe(corpus["folder"], sources=_remote_source(corpus["uri"]))
    fs = SourceFS.of(recipe)
    # A Ray worker on another node has none of the driver's variables.
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    there = pickle.loads(pickle.dumps(fs))
    assert (
        there.read_bytes(f"{corpus['uri']}/characters.jsonl")
        == (corpus["folder"] / "characters.jsonl").read_bytes()
    )


def _originals(store: Store, version: int) -> list[tuple[Any, ...]]:
    manifest = store.manifest(version)
    rows = []
    for path in store.shard_paths(manifest):
        for batch in read_shard_batches(
            path, ["id", "split", "parent_id", "messages"], fs=store.fs
        ):
            rows.extend(r for r in batch.to_pylist() if r["parent_id"] is None)
    return sorted((r["id"], r["split"], str(r["messages"])) for r in rows)


def test_a_run_over_sources_and_store_in_a_bucket_keeps_every_record_of_the_local_run(
    corpus: dict[str, Any], ray_session: Any
) -> None:
    from pipeline.execution.job import run_recipe

    local = run_recipe(make_recipe(corpus["folder"]))
    remote_sources = _remote_source(corpus["uri"])
    remote = run_recipe(
        make_recipe(corpus["folder"], store=corpus["store"], sources=remote_sources)
    )
    # The recipe names other paths, so variants carry another recipe hash; the originals,
    # their splits and every count are the local run's.
    assert remote.counts == local.counts
    local_store, remote_store = (
        Store(str(corpus["folder"] / "store"), "tiny"),
        Store(corpus["store"], "tiny"),
    )
    assert _originals(remote_store, remote.version) == _originals(local_store, local.version)
    assert verify_version(remote_store, remote.version).ok
    manifest = remote_store.manifest(remote.version)
    assert manifest.inputs and all(e.path.startswith("s3://") for e in manifest.inputs)
    # Where the store is does not matter: the same recipe on a local store, same content.
    on_disk = run_recipe(make_recipe(corpus["folder"], store="other-store", sources=remote_sources))
    assert on_disk.content_id == remote.content_id


def test_a_source_on_google_cloud_storage_reads_the_records_it_reads_from_disk(
    gcs_store: str, tmp_path: Path
) -> None:
    folder = tmp_path / "corpus"
    write_corpus(folder)
    uri = upload_folder(folder, f"gs://{_bucket(gcs_store)}/corpora/tiny")
    local_records, _ = _read(make_recipe(folder))
    remote_records, rejected = _read(make_recipe(folder, sources=_remote_source(uri)))
    assert [_without_ref(r) for r in remote_records] == [_without_ref(r) for r in local_records]
    assert remote_records[0]["source_ref"] == f"{uri}/dialogues.jsonl:1"
    assert [e.reason for e in rejected] == ["missing_media"]


def test_an_unchanged_check_takes_pinned_objects_by_size_and_time_without_reading_them(
    corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.execution.provenance as provenance

    # Pins taken long after the upload (no racy window here), checked by a new process.
    monkeypatch.setattr(provenance, "RACY_WINDOW_NS", 0)
    there = make_recipe(corpus["folder"], sources=_remote_source(corpus["uri"]))
    pins = input_entries(there)
    assert all(e.modified is not None for e in pins if e.sha256 is not None)
    monkeypatch.setattr(provenance, "_hashed", {})
    read: list[str] = []
    real = SourceFS.sha256
    monkeypatch.setattr(SourceFS, "sha256", lambda fs, loc: read.append(loc) or real(fs, loc))
    assert unchanged_inputs(there, pins)
    assert read == []
    # A rewritten object has another size or time: it is read, and seen to differ.
    put_object(f"{corpus['uri']}/images/0.png", image_bytes("PNG", 16, 99))
    assert not unchanged_inputs(there, pins)
    assert read == [f"{corpus['uri']}/images/0.png"]


def test_an_object_over_the_media_limit_is_quarantined_unread(corpus: dict[str, Any]) -> None:
    limit = len((corpus["folder"] / "images" / "0.png").read_bytes()) - 1
    sources = _remote_source(corpus["uri"])
    recipe = make_recipe(corpus["folder"], sources=sources, limits={"max_media_bytes": limit})
    _, rejected = _read(recipe)
    assert "media_too_large" in {e.reason for e in rejected}
    assert any("over the limit" in e.message for e in rejected)


def test_an_ingest_task_pins_the_objects_it_read_from_their_bytes_without_a_second_get(
    corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.execution.provenance import media_entries

    recipe = make_recipe(corpus["folder"], sources=_remote_source(corpus["uri"]))
    fs = SourceFS.of(recipe)
    list(read_source(recipe.sources[0], recipe, fs=fs))
    opened: list[str] = []
    real = SourceFS.open
    monkeypatch.setattr(SourceFS, "open", lambda self, loc: opened.append(loc) or real(self, loc))
    pins = media_entries(recipe.sources[0], recipe, fs)
    assert len([e for e in pins if e.sha256]) == len(list((corpus["folder"]).rglob("*.png"))) + len(
        list((corpus["folder"]).rglob("*.wav"))
    )
    # Parsing the dialogues again to list their media is all that is read.
    assert opened and all(loc.endswith(".jsonl") for loc in opened)
