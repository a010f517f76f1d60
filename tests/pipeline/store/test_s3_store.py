"""A store on S3 (a local S3-compatible server): commit, versions, show, diff, verify, gc and a
training read of a version, each as on a local store; racing commits end one version apart.
Training into an S3 store: tests/trainers/test_models_on_s3.py."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs
import pytest
from typer.testing import CliRunner

from pipeline.cards.write import write_cards
from pipeline.cli.app import app
from pipeline.store.commit import CommitResult, VersionCommitter
from pipeline.store.diff import summarize_against_parent
from pipeline.store.fs import CLAIM_FILE, ObjectStoreFS, UnsupportedStore
from pipeline.store.manifest import Manifest
from pipeline.store.read import Store, VersionCorrupt, ray_dataset
from pipeline.store.shards import read_shard_batches
from pipeline.store.store_fs import store_fs
from pipeline.store.verify import verify_version
from tests.pipeline.execution.datajob_corpus import make_recipe, recipe_dict, write_corpus

ROOT = Path(__file__).resolve().parents[3]
EXTRA = 3
runner = CliRunner()


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory: pytest.TempPathFactory, ray_session: Any) -> dict[str, Any]:
    """Run the tiny recipe twice on a local store (the corpus, then EXTRA more dialogues)."""
    from pipeline.execution.job import run_recipe

    folder = tmp_path_factory.mktemp("s3-local")
    write_corpus(folder)
    first = run_recipe(make_recipe(folder))
    write_corpus(folder, extra=EXTRA)
    second = run_recipe(make_recipe(folder))
    assert (first.version, second.version) == (1, 2)
    return {"folder": folder, "store": Store(str(folder / "store"), "tiny")}


def _body(manifest: Manifest) -> Manifest:
    """Return what a data job hands the committer: the manifest before version and cards."""
    return manifest.model_copy(
        update={"version": None, "parent_version": None, "cards": [], "manifest_sha256": None}
    )


def _stage_on(store: Store, source: Store, version: int, run_id: str) -> tuple[str, Manifest]:
    """Copy the shards (and their sidecars) of `source`'s version into a staging folder of `store` (as the data
    job's writer leaves them); return the folder and the manifest body."""
    manifest = source.manifest(version)
    staged = os.path.join(store.staging_dir(run_id), "version")
    files = [s.path for s in manifest.shards] + [s.row_digests for s in manifest.shards]
    for name in files:
        src = os.path.join(source.version_dir(version), name)
        with store.fs.open_output(os.path.join(staged, name)) as out:
            out.write(Path(src).read_bytes())
    return staged, _body(manifest)


def _committer(store: Store, cards: Path | None = None) -> VersionCommitter:
    return VersionCommitter(
        store,
        write_cards=write_cards,
        summarize_diff=summarize_against_parent,
        cards_copy_dir=str(cards) if cards else None,
    )


def _publish(store: Store, source: Store, cards: Path | None = None) -> list[CommitResult]:
    committer = _committer(store, cards)
    results = []
    for version in source.versions():
        results.append(committer.commit(*_stage_on(store, source, version, f"run{version}")))
        store.fs.remove_tree(store.staging_dir(f"run{version}"))  # as the data job does
    return results


def publish_local_runs(store_uri: str, local_runs: dict[str, Any]) -> tuple[Store, Store]:
    """Return (the store at `store_uri` holding the local runs' two versions, the local store)."""
    local: Store = local_runs["store"]
    store = Store(store_uri, "tiny")
    _publish(store, local)
    return store, local


@pytest.fixture
def published(s3_store: str, local_runs: dict[str, Any]) -> tuple[Store, Store]:
    """Return (the S3 store holding the local runs' two versions, the local store)."""
    return publish_local_runs(s3_store, local_runs)


def test_an_s3_uri_names_an_object_store_and_bucket_paths(s3_store: str) -> None:
    fs, path = store_fs(s3_store)
    assert isinstance(fs, ObjectStoreFS) and not fs.is_local
    assert path == s3_store.removeprefix("s3://")
    assert fs.endpoint_url == os.environ["AWS_ENDPOINT_URL"]
    assert store_fs(s3_store, endpoint_url="http://other:9000")[0].endpoint_url == (
        "http://other:9000"
    )
    store = Store(s3_store, "tiny")
    assert store.root == f"{path}/tiny" and store.location == s3_store
    with pytest.raises(UnsupportedStore, match="ftp:// stores are not supported"):
        store_fs("ftp://host/x")
    with pytest.raises(UnsupportedStore, match="names no bucket"):
        store_fs("s3://")


def test_the_exclusive_create_is_a_conditional_put_the_second_writer_loses(
    s3_store: str,
) -> None:
    fs, path = store_fs(s3_store)
    target = os.path.join(path, "versions", "v1.json")
    fs.create_exclusive(target, b"first")
    with pytest.raises(FileExistsError):
        fs.create_exclusive(target, b"second")
    assert fs.read_bytes(target) == b"first"
    # A retry of the first create (its reply lost) meets its own bytes: that create is done.
    fs.create_exclusive(target, b"first")


def test_the_object_store_fs_pickles_without_its_clients_and_works_after(
    s3_store: str,
) -> None:
    fs, path = store_fs(s3_store)
    fs.write_bytes(os.path.join(path, "a.txt"), b"hello")
    assert fs._arrow is not None
    copy = pickle.loads(pickle.dumps(fs))
    assert copy._arrow is None and copy._client is None
    assert copy.read_bytes(os.path.join(path, "a.txt")) == b"hello"
    assert "secret" not in repr(fs)
    fs.rename_dir(path, path + "-moved")
    assert fs.listdir(path + "-moved") == ["a.txt"] and not fs.exists(path)


def check_versions_hold_the_local_content(
    store_uri: str, local_runs: dict[str, Any], tmp_path: Path
) -> None:
    """Publish the local runs on `store_uri`: the same content ids, cards and reruns."""
    local: Store = local_runs["store"]
    store = Store(store_uri, "tiny")
    results = _publish(store, local, cards=tmp_path / "cards")
    assert [(r.version, r.unchanged) for r in results] == [(1, False), (2, False)]
    for version in (1, 2):
        remote, here = store.manifest(version), local.manifest(version)
        assert remote.content_id == here.content_id
        assert remote.parent_version == here.parent_version
        assert verify_version(store, version).ok
        # The cards are computed from the shards read back from the store: the same text.
        for card in remote.cards:
            assert store.fs.read_bytes(os.path.join(store.version_dir(version), card.path)) == (
                Path(local.version_dir(version), card.path).read_bytes()
            )
    # The git copy of the card is local, whatever the store.
    assert (tmp_path / "cards" / "tiny" / "v2.md").read_bytes() == store.fs.read_bytes(
        os.path.join(store.version_dir(2), "README.md")
    )
    # Committing the same content again publishes nothing new.
    again = _committer(store).commit(*_stage_on(store, local, 2, "again"))
    assert again.unchanged and again.version == 2


def test_versions_committed_on_s3_hold_the_content_of_the_same_run_on_a_local_store(
    s3_store: str, local_runs: dict[str, Any], tmp_path: Path
) -> None:
    check_versions_hold_the_local_content(s3_store, local_runs, tmp_path)


def check_versions_show_diff_verify_and_gc(store_uri: str, published: tuple[Store, Store]) -> None:
    """The CLI on the store at `store_uri` answers as on the local store; gc takes leftovers."""
    store, local = published

    listed = _invoke("versions", "tiny", "--store", store_uri, "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert data["store"] == store_uri
    assert [v["content_id"] for v in data["versions"]] == [
        local.manifest(v).content_id for v in (1, 2)
    ]
    assert data["versions"][1]["path"] == f"{store_uri}/tiny/versions/v2"

    shown = _invoke("show", "tiny@v1", "--store", store_uri, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["content_id"] == local.manifest(1).content_id

    remote_diff = _invoke("diff", "tiny@v1", "tiny@v2", "--store", store_uri, "--json")
    local_diff = _invoke("diff", "tiny@v1", "tiny@v2", "--store", local.path, "--json")
    assert remote_diff.exit_code == 0, remote_diff.output
    assert json.loads(remote_diff.stdout) == json.loads(local_diff.stdout)
    assert json.loads(remote_diff.stdout)["added"]

    verified = _invoke("verify", "tiny@v2", "--store", store_uri, "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["ok"]

    # Leftovers of crashed runs: a staging folder, a claimed but never published v3/, and a
    # stray file in v1/. gc removes exactly those.
    fs = store.fs
    fs.write_bytes(os.path.join(store.staging_dir("crashed"), "ingest", "part-00000.arrow"), b"x")
    fs.create_exclusive(os.path.join(store.version_dir(3), CLAIM_FILE), b"claim")
    fs.write_bytes(os.path.join(store.version_dir(1), "stray.tmp"), b"y")
    # Another machine's run may be writing them: by default gc spares anything this fresh.
    spared = _invoke("gc", "tiny", "--store", store_uri, "--json")
    assert spared.exit_code == 0, spared.output
    assert json.loads(spared.stdout)["removed"] == []
    gc = _invoke("gc", "tiny", "--store", store_uri, "--min-age", "0", "--json")
    assert gc.exit_code == 0, gc.output
    assert sorted(json.loads(gc.stdout)["removed"]) == [
        "_staging/crashed",
        "versions/v1/stray.tmp",
        "versions/v3",
    ]
    assert store.versions() == [1, 2]
    assert all(verify_version(store, v).ok for v in (1, 2))
    assert not fs.exists(store.version_dir(3))
    # A folder marker with no object under it (pyarrow leaves one after a delete) holds
    # nothing a run still writes: even the default gc takes it.
    fs.arrow.create_dir(store.staging_dir("emptied"))
    marker = _invoke("gc", "tiny", "--store", store_uri, "--json")
    assert json.loads(marker.stdout)["removed"] == ["_staging/emptied"]


def test_versions_show_diff_verify_and_gc_work_on_an_s3_store(
    s3_store: str, published: tuple[Store, Store]
) -> None:
    check_versions_show_diff_verify_and_gc(s3_store, published)


def test_an_edited_or_stripped_manifest_fails_verify_on_s3(
    s3_store: str, published: tuple[Store, Store]
) -> None:
    store, _ = published
    path = store.manifest_path(1)
    data = json.loads(store.fs.read_bytes(path))
    data["splits"]["train"] += 1
    store.fs.write_bytes(path, json.dumps(data).encode())
    report = verify_version(store, 1)
    assert [p.problem for p in report.problems] == ["manifest"]
    del data["manifest_sha256"]
    store.fs.write_bytes(path, json.dumps(data).encode())
    result = _invoke("verify", "tiny@v1", "--store", s3_store)
    assert result.exit_code == 1
    with pytest.raises(VersionCorrupt, match="tiny@v1 is corrupt"):
        Store(s3_store, "tiny").checked_manifest(1)
    # A shard cut short is caught by its size, before any hashing.
    shard = store.manifest(2).shards[0]
    shard_path = os.path.join(store.version_dir(2), shard.path)
    store.fs.write_bytes(shard_path, store.fs.read_bytes(shard_path)[:-10])
    assert [p.problem for p in verify_version(store, 2).problems] == ["size"]


def test_a_claim_won_by_another_machine_sends_the_commit_to_the_next_number(
    s3_store: str, local_runs: dict[str, Any]
) -> None:
    store = Store(s3_store, "tiny")
    staged, manifest = _stage_on(store, local_runs["store"], 1, "mine")
    other = pickle.loads(pickle.dumps(store.fs))  # another process, sharing no lock with us
    real_claim = VersionCommitter._claim

    def claim_after_the_other(self: VersionCommitter, number: int) -> None:
        # The other machine listed the same versions and claimed v<number> just before us.
        if number == 1:
            other.create_exclusive(os.path.join(store.version_dir(1), CLAIM_FILE), b"other")
        real_claim(self, number)

    committer = _committer(store)
    committer._claim = claim_after_the_other.__get__(committer)  # type: ignore[method-assign]
    result = committer.commit(staged, manifest)
    assert (result.version, result.unchanged) == (2, False)
    assert store.versions() == [2] and verify_version(store, 2).ok
    # Nothing of ours went into the folder the other one claimed.
    assert store.fs.listdir(store.version_dir(1)) == [CLAIM_FILE]


CHILD = """
import json, logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from pipeline.store.commit import VersionCommitter
from pipeline.store.manifest import Manifest
from pipeline.store.read import Store

store_uri, staged, manifest_json, go = sys.argv[1:5]
manifest = Manifest.from_json(manifest_json)
while time.time() < float(go):
    time.sleep(0.001)
result = VersionCommitter(Store(store_uri, "tiny")).commit(staged, manifest)
print(json.dumps({"version": result.version, "unchanged": result.unchanged}))
"""


def race_two_machines_for_one_number(
    store_uri: str, local_runs: dict[str, Any], tmp_path: Path
) -> None:
    """Two processes commit to `store_uri` at once: one gets v1, the other v2, both whole."""
    local: Store = local_runs["store"]
    store = Store(store_uri, "tiny")
    start = time.time() + 8.0  # both children have imported and wait for this moment
    children = []
    for i, version in enumerate((1, 2)):
        staged, manifest = _stage_on(store, local, version, f"racer{i}")
        # A temp dir of its own: the local commit lock is not shared, as on two machines.
        tmpdir = tmp_path / f"machine{i}"
        tmpdir.mkdir()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    store_uri,
                    staged,
                    manifest.model_dump_json(),
                    str(start),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
        results.append(json.loads(out))
    assert sorted(r["version"] for r in results) == [1, 2]
    assert not any(r["unchanged"] for r in results)
    assert store.versions() == [1, 2]
    assert all(verify_version(store, v).ok for v in (1, 2))
    assert {store.manifest(v).content_id for v in (1, 2)} == {
        local.manifest(v).content_id for v in (1, 2)
    }


def test_two_machines_racing_for_the_same_number_on_s3_end_one_version_apart(
    s3_store: str, local_runs: dict[str, Any], tmp_path: Path
) -> None:
    race_two_machines_for_one_number(s3_store, local_runs, tmp_path)


def check_training_reads_like_local(published: tuple[Store, Store]) -> None:
    """The trainers' split reader, shard batches and ray_dataset read a published version
    row for row as from the local store."""
    from trainers.data import SplitReader

    store, local = published
    manifest = store.checked_manifest(2)
    for split in ("train", "validation", "test"):
        remote = SplitReader(store.shard_paths(manifest, split), store.fs)
        here = SplitReader(local.shard_paths(local.manifest(2), split))
        assert len(remote) == len(here) > 0
        assert remote.table.equals(here.table)
        # A DataLoader worker gets a reader that opens the shards itself.
        assert pickle.loads(pickle.dumps(remote)).row(0) == here.row(0)
    ids = [
        i
        for path in store.shard_paths(manifest)
        for batch in read_shard_batches(path, columns=["id"], fs=store.fs)
        for i in batch.column(0).to_pylist()
    ]
    assert len(ids) == sum(manifest.splits.values())
    ds = ray_dataset(store, 2, "train")
    assert ds.count() == manifest.splits["train"]


def test_training_reads_a_version_from_s3_row_for_row_as_from_a_local_store(
    published: tuple[Store, Store],
) -> None:
    check_training_reads_like_local(published)


def test_export_reads_a_version_from_s3_as_from_local(
    s3_store: str, published: tuple[Store, Store], tmp_path: Path
) -> None:
    _, local = published
    remote = _invoke("export", "tiny@v2", str(tmp_path / "s3"), "--to", "trl", "--store", s3_store)
    assert remote.exit_code == 0, remote.output
    here = _invoke(
        "export", "tiny@v2", str(tmp_path / "local"), "--to", "trl", "--store", local.path
    )
    assert here.exit_code == 0, here.output
    files = sorted(p.relative_to(tmp_path / "s3") for p in (tmp_path / "s3").rglob("*"))
    assert files == sorted(
        p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*")
    )
    for rel in files:
        if (tmp_path / "s3" / rel).is_file():
            assert (tmp_path / "s3" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes()


def test_arrow_ipc_shards_read_back_from_s3(s3_store: str, tmp_path: Path) -> None:
    from pipeline.store.shards import read_shard

    table = pa.table({"id": ["a", "b", "c"], "n": [1, 2, 3]})
    fs, path = store_fs(s3_store)
    shard = os.path.join(path, "train-00000-of-00001.arrow")
    with fs.open_output(shard) as out, pa.ipc.new_stream(out, table.schema) as writer:
        writer.write_table(table)
    assert read_shard(shard, fs).equals(table)
    assert pa.Table.from_batches(list(read_shard_batches(shard, fs=fs))).equals(table)


def test_store_options_set_the_endpoint_and_stay_out_of_the_recipe_hash(tmp_path: Path) -> None:
    from pipeline.recipe import parse_recipe
    from pipeline.record.config import RecipeError

    plain = parse_recipe(recipe_dict(store="s3://bucket/x"), base_dir=str(tmp_path))
    pointed = parse_recipe(
        recipe_dict(store="s3://bucket/x", store_options={"endpoint_url": "http://127.0.0.1:9"}),
        base_dir=str(tmp_path),
    )
    assert pointed.recipe_hash == plain.recipe_hash
    fs, _ = store_fs(pointed.store_uri, **pointed.store_options.fs_kwargs())
    assert fs.endpoint_url == "http://127.0.0.1:9"
    with pytest.raises(RecipeError, match="store_options"):
        parse_recipe(
            recipe_dict(store_options={"endpoint": "http://127.0.0.1:9"}), base_dir=str(tmp_path)
        )
    with pytest.raises(RecipeError, match="endpoint_url"):
        parse_recipe(recipe_dict(store_options={"endpoint_url": "127.0.0.1"}), base_dir=".")


def test_a_missing_bucket_is_one_line_before_any_work(s3_store: str) -> None:
    fs, path = store_fs(s3_store.replace("roleforge-", "roleforge-missing-", 1))
    with pytest.raises(OSError, match="cannot write to s3://roleforge-missing-"):
        fs.check_writable(path)


def check_roleforge_run_publishes_the_local_content(
    store_uri: str, local_runs: dict[str, Any], tmp_path: Path
) -> None:
    """`roleforge run` with the store at `store_uri` publishes what the local run did."""
    import yaml

    folder = tmp_path / "corpus"
    write_corpus(folder)
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(store=store_uri)), encoding="utf-8")
    result = _invoke("run", str(recipe), "--json")
    assert result.exit_code == 0, result.output
    local_v1 = Manifest.read(local_runs["store"].manifest_path(1))
    assert json.loads(result.stdout)["content_id"] == local_v1.content_id
    assert verify_version(Store(store_uri, "tiny"), 1).ok


def test_roleforge_run_on_an_s3_store_publishes_the_local_runs_content(
    s3_store: str, local_runs: dict[str, Any], tmp_path: Path
) -> None:
    check_roleforge_run_publishes_the_local_content(s3_store, local_runs, tmp_path)


def test_listing_an_absent_prefix_is_empty_not_an_error(s3_store: str) -> None:
    fs, path = store_fs(s3_store)
    assert fs.listdir(os.path.join(path, "nothing")) == []
    assert fs.files(os.path.join(path, "nothing")) == []
    assert Store(s3_store, "tiny").versions() == []
    assert fs.arrow.get_file_info(path).type == pyarrow.fs.FileType.NotFound
