"""`roleforge view` over an s3:// store (a local S3 server): the same pages, shards and media
read through the store's filesystem with ranged reads."""

from __future__ import annotations

from pipeline.store.store_fs import store_fs
from pipeline.view import ViewSite
from tests.pipeline.view.conftest import NAME, build_demo_store


def test_pages_and_media_of_a_version_on_an_object_store(s3_store, tmp_path):
    demo = build_demo_store(str(tmp_path / "store"), models=False)
    fs, path = store_fs(s3_store)
    fs.upload_tree(str(tmp_path / "store"), path)
    site = ViewSite(s3_store)
    versions = site.get("/")
    assert versions.status == 302 and versions.headers["Location"] == f"/d/{NAME}/"
    rows = site.get(f"/d/{NAME}/v1/", {"modality": "image"})
    assert rows.status == 200 and b"boat.png" in rows.body
    record = next(r for r in demo.records if r["images"])
    media = site.get(f"/d/{NAME}/v1/m/{record['id']}/images/0.png")
    assert media.status == 200 and media.body == record["images"][0]["bytes"]
    assert site.get(f"/d/{NAME}/v1/quarantine").status == 200
    assert b"placeholder_mismatch" in site.get(f"/d/{NAME}/v1/quarantine").body
    assert site.get(f"/d/{NAME}/models/").status == 200
