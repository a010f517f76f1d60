"""A store on Google Cloud Storage (a local GCS emulator): the exclusive create is an upload
GCS refuses once the object exists; commit, versions, show, diff, verify, gc, racing commits
and `roleforge run` behave as on S3 (the shared checks live in test_s3_store)."""

from __future__ import annotations

import os
import pickle
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.store.fs import StoreNotWritable, UnsupportedStore, local_store_path
from pipeline.store.gcs import GcsFS
from pipeline.store.read import Store
from pipeline.store.store_fs import store_fs
from tests.pipeline.execution.datajob_corpus import recipe_dict
from tests.pipeline.store.test_s3_store import (
    check_roleforge_run_publishes_the_local_content,
    check_training_reads_like_local,
    check_versions_hold_the_local_content,
    check_versions_show_diff_verify_and_gc,
    local_runs,  # noqa: F401  (the module fixture: the local runs every check compares to)
    publish_local_runs,
    race_two_machines_for_one_number,
)


@pytest.fixture
def published(gcs_store: str, local_runs: dict[str, Any]) -> tuple[Store, Store]:  # noqa: F811
    """Return (the GCS store holding the local runs' two versions, the local store)."""
    return publish_local_runs(gcs_store, local_runs)


def test_a_gs_uri_names_a_gcs_store_reached_at_the_emulator_variable(gcs_store: str) -> None:
    fs, path = store_fs(gcs_store)
    assert isinstance(fs, GcsFS) and not fs.is_local
    assert path == gcs_store.removeprefix("gs://")
    assert fs.endpoint_url == os.environ["STORAGE_EMULATOR_HOST"]
    assert store_fs(gcs_store, endpoint_url="http://other:4443")[0].endpoint_url == (
        "http://other:4443"
    )
    store = Store(gcs_store, "tiny")
    assert store.root == f"{path}/tiny" and store.location == gcs_store
    with pytest.raises(UnsupportedStore, match="names no bucket"):
        store_fs("gs://")
    with pytest.raises(UnsupportedStore, match="region applies to s3:// stores only"):
        store_fs(gcs_store, region="europe-west1")
    with pytest.raises(UnsupportedStore, match="s3://, gs://"):
        local_store_path("ftp://host/x")


def test_a_bare_host_in_the_emulator_variable_is_reached_over_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:9023")
    assert GcsFS().endpoint_url == "http://localhost:9023"
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert GcsFS().endpoint_url is None  # GCS itself, with the default credentials


def test_a_gs_store_without_google_cloud_storage_installed_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)  # as if not installed
    with pytest.raises(UnsupportedStore, match=r"pip install 'roleforge\[gcs\]'"):
        store_fs("gs://bucket/x")


def test_the_exclusive_create_is_an_upload_gcs_refuses_once_the_object_exists(
    gcs_store: str,
) -> None:
    fs, path = store_fs(gcs_store)
    target = os.path.join(path, "versions", "v1.json")
    fs.create_exclusive(target, b"first")
    with pytest.raises(FileExistsError):
        fs.create_exclusive(target, b"second")
    assert fs.read_bytes(target) == b"first"
    # A retry of the first create (its reply lost) meets its own bytes: that create is done.
    fs.create_exclusive(target, b"first")


def test_listing_shows_the_subfolders_that_exist_only_as_prefixes(gcs_store: str) -> None:
    fs, path = store_fs(gcs_store)
    fs.write_bytes(os.path.join(path, "versions", "v1", "train.arrow"), b"a")
    fs.write_bytes(os.path.join(path, "versions", "v1.json"), b"{}")
    assert fs.listdir(os.path.join(path, "versions")) == ["v1", "v1.json"]
    assert fs.listdir(path) == ["versions"]
    assert fs.listdir(os.path.join(path, "nothing")) == []
    assert fs.files(os.path.join(path, "nothing")) == []
    assert Store(gcs_store, "tiny").versions() == []


def test_the_gcs_fs_pickles_without_its_clients_and_moves_and_removes_folders(
    gcs_store: str,
) -> None:
    fs, path = store_fs(gcs_store)
    fs.write_bytes(os.path.join(path, "a.txt"), b"hello")
    fs.write_bytes(os.path.join(path, "sub", "b.txt"), b"world")
    assert fs._arrow is not None
    copy = pickle.loads(pickle.dumps(fs))
    assert copy._arrow is None and copy._client is None
    assert copy.read_bytes(os.path.join(path, "a.txt")) == b"hello"
    fs.rename_dir(path, path + "-moved")
    assert fs.listdir(path + "-moved") == ["a.txt", "sub"] and not fs.exists(path)
    assert fs.read_bytes(os.path.join(path + "-moved", "sub", "b.txt")) == b"world"
    fs.remove_tree(path + "-moved")
    assert not fs.exists(path + "-moved")


def test_versions_committed_on_gcs_hold_the_content_of_the_same_run_on_a_local_store(
    gcs_store: str,
    local_runs: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    check_versions_hold_the_local_content(gcs_store, local_runs, tmp_path)


def test_versions_show_diff_verify_and_gc_work_on_a_gcs_store(
    gcs_store: str, published: tuple[Store, Store]
) -> None:
    check_versions_show_diff_verify_and_gc(gcs_store, published)


def test_two_machines_racing_for_the_same_number_on_gcs_end_one_version_apart(
    gcs_store: str,
    local_runs: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    race_two_machines_for_one_number(gcs_store, local_runs, tmp_path)


def test_training_reads_a_version_from_gcs_row_for_row_as_from_a_local_store(
    published: tuple[Store, Store],
) -> None:
    check_training_reads_like_local(published)


def test_store_options_point_a_gs_store_at_an_endpoint_and_refuse_a_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.recipe import parse_recipe

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    pointed = parse_recipe(
        recipe_dict(store="gs://bucket/x", store_options={"endpoint_url": "http://127.0.0.1:9"}),
        base_dir=str(tmp_path),
    )
    fs, path = store_fs(pointed.store_uri, **pointed.store_options.fs_kwargs())
    assert isinstance(fs, GcsFS) and fs.endpoint_url == "http://127.0.0.1:9"
    assert path == "bucket/x"
    regional = parse_recipe(
        recipe_dict(store="gs://bucket/x", store_options={"region": "us-east1"}),
        base_dir=str(tmp_path),
    )
    with pytest.raises(UnsupportedStore, match="store_options.region"):
        store_fs(regional.store_uri, **regional.store_options.fs_kwargs())


def test_a_missing_bucket_is_one_line_before_any_work(gcs_store: str) -> None:
    fs, path = store_fs(gcs_store.replace("roleforge-", "roleforge-missing-", 1))
    with pytest.raises(OSError, match="cannot write to gs://roleforge-missing-"):
        fs.check_writable(path)


def test_an_unreachable_endpoint_is_one_line_once_the_retries_run_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pipeline.store.gcs

    monkeypatch.setattr(pipeline.store.gcs, "RETRY_LIMIT", timedelta(seconds=1))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    fs, path = store_fs("gs://bucket/x", endpoint_url=dead)
    with pytest.raises(StoreNotWritable, match="cannot write to gs://bucket/x: .*UNAVAILABLE"):
        fs.check_writable(path)


def test_roleforge_run_on_a_gcs_store_publishes_the_local_runs_content(
    gcs_store: str,
    local_runs: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    check_roleforge_run_publishes_the_local_content(gcs_store, local_runs, tmp_path)
