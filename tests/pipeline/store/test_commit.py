"""The commit: staging -> versions/v<N>/ -> cards -> manifest, crash-safe at every step."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.record.schema import RECORD_SCHEMA
from pipeline.store.atomic import FAULT_ENV, InjectedFault
from pipeline.store.commit import (
    FAULT_POINTS,
    CommitCheckFailed,
    VersionCommitter,
    check_counts,
)
from pipeline.store.fs import LocalFS
from pipeline.store.gc import collect_garbage
from pipeline.store.manifest import Manifest, content_id, schema_sha256, shard_content_id
from pipeline.store.read import Store
from pipeline.store.row_digest import digest_table
from pipeline.store.verify import verify_version
from pipeline.store.writer import ShardWriter
from tests.fixtures.manifest import manifest_of, staged_content_id
from tests.pipeline.execution.datajob_corpus import stage_records, work_record

SPLIT_OF = ("train", "train", "train", "validation", "test")


def _cards(vdir: str, manifest: Manifest, parent: Any, diff: Any, fs: Any = None) -> list[str]:
    with open(os.path.join(vdir, "README.md"), "w", encoding="utf-8") as f:
        f.write(f"# {manifest.name} v{manifest.version} {manifest.content_id}\n")
    return ["README.md"]


def _stage(root: Path, run: str, n: int = 10) -> tuple[str, Manifest]:
    """Stage `n` records as a version folder; return it with its manifest body."""
    records = [work_record(i, split=SPLIT_OF[i % 5]) for i in range(n)]
    parts, index = stage_records(root / "parts" / run, records, rows_per_part=4)
    staged = str(root / "store" / "ds" / "_staging" / run / "version")
    shards = ShardWriter(staged, "arrow", 1 << 30, LocalFS()).write(index, parts)
    schema_hash = schema_sha256(RECORD_SCHEMA)
    manifest = manifest_of(
        "ds", shards, run_id=run, content_id=staged_content_id(staged, shards, schema_hash)
    )
    manifest = manifest.model_copy(update={"schema_sha256": schema_hash})
    return staged, manifest


def _committer(root: Path) -> VersionCommitter:
    store = Store(str(root / "store"), "ds")
    return VersionCommitter(
        store, LocalFS(), write_cards=_cards, cards_copy_dir=str(root / "cards")
    )


def _visible_versions_are_complete(store: Store) -> list[int]:
    for version in store.versions():
        assert verify_version(store, version).ok
    return store.versions()


def test_commit_moves_the_staged_folder_and_creates_the_manifest_last(tmp_path: Path) -> None:
    staged, manifest = _stage(tmp_path, "r1")
    result = _committer(tmp_path).commit(staged, manifest)
    store = Store(str(tmp_path / "store"), "ds")
    assert (result.version, result.unchanged) == (1, False)
    assert not os.path.exists(staged)
    written = json.loads(Path(store.manifest_path(1)).read_text())
    # `quality` is left out while None (a recipe without `quality:`), like reuse and split_groups.
    fields = [f.alias or name for name, f in Manifest.model_fields.items() if name != "quality"]
    assert list(written) == fields
    assert Manifest.from_json(Path(store.manifest_path(1)).read_bytes()) == result.manifest
    assert written["version"] == 1 and written["parent_version"] is None
    assert [c["path"] for c in written["cards"]] == ["README.md"]
    assert (tmp_path / "cards" / "ds" / "v1.md").read_text().startswith("# ds v1")
    assert verify_version(store, 1).ok


class _OrderFS(LocalFS):
    """LocalFS that notes, in order, every fsync, rename and exclusive create."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def fsync_file(self, path: str) -> None:
        self.calls.append(("fsync", path))
        super().fsync_file(path)

    def fsync_dir(self, path: str) -> None:
        self.calls.append(("fsync_dir", path))
        super().fsync_dir(path)

    def rename_dir(self, src: str, dst: str) -> None:
        self.calls.append(("rename", src))
        super().rename_dir(src, dst)

    def create_exclusive(self, path: str, data: bytes) -> None:
        self.calls.append(("create", path))
        super().create_exclusive(path, data)


def test_every_staged_file_and_folder_is_fsynced_once_before_the_move_and_the_manifest(
    tmp_path: Path,
) -> None:
    staged, manifest = _stage(tmp_path, "r1")
    files = sorted(str(p) for p in Path(staged).rglob("*") if p.is_file())
    folders = {staged, os.path.join(staged, "_rows")}
    fs = _OrderFS()
    store = Store(str(tmp_path / "store"), "ds")
    VersionCommitter(store, fs, write_cards=_cards).commit(staged, manifest)
    moved = fs.calls.index(("rename", staged))
    before = fs.calls[:moved]
    assert sorted(p for kind, p in before if kind == "fsync") == files
    assert {p for kind, p in before if kind == "fsync_dir"} == folders
    # The deepest folder first: a folder's entry for a subfolder follows the subfolder.
    assert before.index(("fsync_dir", os.path.join(staged, "_rows"))) < before.index(
        ("fsync_dir", staged)
    )
    assert fs.calls.index(("create", store.manifest_path(1))) > moved


def test_the_same_content_is_not_published_twice(tmp_path: Path) -> None:
    committer = _committer(tmp_path)
    first = committer.commit(*_stage(tmp_path, "r1"))
    again = committer.commit(*_stage(tmp_path, "r2"))
    assert again.unchanged and again.version == first.version == 1
    assert again.content_id == first.content_id
    assert committer.store.versions() == [1]
    changed = committer.commit(*_stage(tmp_path, "r3", n=11))
    assert (changed.version, changed.unchanged) == (2, False)
    assert changed.manifest.parent_version == 1


def test_a_crashed_commits_leftover_folder_is_replaced_and_its_number_reused(
    tmp_path: Path,
) -> None:
    committer = _committer(tmp_path)
    # A crashed run left versions/v1/ without a manifest (a live one would hold the lock).
    os.makedirs(os.path.join(committer.store.version_dir(1), "x"))
    result = committer.commit(*_stage(tmp_path, "r1"))
    assert result.version == 1
    assert committer.store.versions() == [1]
    assert not os.path.exists(os.path.join(committer.store.version_dir(1), "x"))


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_crash_at_any_commit_step_leaves_only_complete_versions_and_a_rerun_converges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    committer = _committer(tmp_path)
    base = committer.commit(*_stage(tmp_path, "r0", n=6))
    staged, manifest = _stage(tmp_path, "r1")
    monkeypatch.setenv(FAULT_ENV, point)
    with pytest.raises(InjectedFault):
        committer.commit(staged, manifest)
    monkeypatch.delenv(FAULT_ENV)

    visible = _visible_versions_are_complete(committer.store)
    assert visible == ([1, 2] if point == "after_manifest" else [1])
    assert committer.store.manifest().content_id in (base.content_id, manifest.content_id)

    rerun = committer.commit(*_stage(tmp_path, "r2"))
    assert rerun.content_id == manifest.content_id
    assert rerun.unchanged == (point == "after_manifest")
    _visible_versions_are_complete(committer.store)
    # What the crash left behind is unreferenced, and gc takes it away.
    collect_garbage(committer.store, LocalFS(), min_age_s=0)
    leftovers = [n for n in os.listdir(committer.store.versions_dir) if not n.endswith(".json")]
    assert sorted(leftovers) == [f"v{v}" for v in committer.store.versions()]


def test_counts_that_do_not_add_up_stop_the_commit() -> None:
    good = {
        "ingest": {"in": 10, "out": 9, "dropped": 0, "quarantined": 1},
        "validate": {"in": 9, "out": 8, "dropped": 0, "quarantined": 1},
        "dedup": {"in": 8, "out": 7, "dropped": 1, "quarantined": 0},
        "split": {"in": 7, "out": 7, "dropped": 0, "quarantined": 0},
        "augment": {"in": 7, "out": 7, "dropped": 0, "quarantined": 0, "variants": 4},
        "write": {"in": 11, "out": 11, "dropped": 0, "quarantined": 0},
    }
    check_counts(good)
    lost = json.loads(json.dumps(good))
    lost["validate"]["out"] = 7
    with pytest.raises(CommitCheckFailed, match="validate"):
        check_counts(lost)
    skipped = json.loads(json.dumps(good))
    skipped["write"] = {"in": 7, "out": 7, "dropped": 0, "quarantined": 0}
    with pytest.raises(CommitCheckFailed, match="write: in 7 != 11"):
        check_counts(skipped)


def test_content_id_depends_on_row_digests_and_schema_not_on_how_rows_fall_into_shards() -> None:
    one = digest_table(["a", "b", "c"], ["d1", "d2", "d3"])
    a = content_id("s", [one])
    assert a == content_id(
        "s", [digest_table(["c"], ["d3"]), digest_table(["b", "a"], ["d2", "d1"])]
    )
    assert a != content_id("s", [digest_table(["a", "b", "c"], ["d1", "d2", "dX"])])
    assert a != content_id("s", [digest_table(["a", "b"], ["d1", "d2"])])
    assert a != content_id("t", [one])


@pytest.mark.parametrize("pairs_per_slice", [1 << 20, 7])
def test_content_id_is_the_sha256_of_the_canonical_json_of_schema_and_sorted_pairs(
    pairs_per_slice: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from pipeline.store import manifest

    monkeypatch.setattr(manifest, "CONTENT_ID_SLICE", pairs_per_slice)

    from pipeline.record.ids import canonical_json

    def spec(ids: list[str], digests: list[str]) -> str:
        pairs = sorted([i, d] for i, d in zip(ids, digests, strict=True))
        payload = canonical_json({"schema": "s", "rows": pairs})
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    plain = ([f"{i:04x}" for i in range(50)][::-1], [f"d{i}" for i in range(50)])
    # Values JSON must escape (a quote, a backslash, a control character) and non-ASCII.
    escaped = (['q"uote', "back\\slash", "new\nline", "é"], ["\x01", "d2", "d3", "ü"])
    for ids, digests in (plain, escaped, (["only"], ["d"]), ([], [])):
        assert content_id("s", [digest_table(ids, digests)]) == spec(ids, digests)
    assert content_id("s", []) == spec([], [])


def test_a_format_1_content_id_depends_on_shard_hashes_and_schema_not_on_their_order() -> None:
    a = shard_content_id("s", ["h1", "h2"])
    assert a == shard_content_id("s", ["h2", "h1"])
    assert a != shard_content_id("s", ["h1", "h3"])
    assert a != shard_content_id("t", ["h1", "h2"])


def test_a_manifest_file_that_is_not_one_is_refused_in_one_line(tmp_path: Path) -> None:
    from pipeline.store.manifest import ManifestInvalid

    store = Store(str(tmp_path), "ds")
    os.makedirs(store.versions_dir)
    Path(store.manifest_path(1)).write_text('{"format": "roleforge.manifest/1", "name": "ds"}')
    with pytest.raises(ManifestInvalid, match=r"v1\.json: not a valid manifest: run_id"):
        store.manifest(1)
