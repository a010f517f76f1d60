"""The store's filesystem seam: files a team can share, and one line when it cannot write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.fs import LocalFS, StoreNotWritable
from pipeline.store.writer import ShardWriter
from tests.pipeline.execution.datajob_corpus import stage_records, work_record, write_corpus


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)]
)
def test_manifests_and_shards_take_the_process_umask(
    tmp_path: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    old = os.umask(umask)
    try:
        fs = LocalFS()
        fs.makedirs(str(tmp_path / "versions"))
        fs.create_exclusive(str(tmp_path / "versions" / "v1.json"), b"{}\n")
        parts, index = stage_records(tmp_path / "parts", [work_record(0, split="train")], 1)
        ShardWriter(str(tmp_path / "versions" / "v1"), "parquet", 1 << 20, fs).write(index, parts)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "versions" / "v1.json") == file_mode
    assert _mode(tmp_path / "versions" / "v1") == dir_mode
    assert _mode(tmp_path / "versions" / "v1" / "train-00000-of-00001.parquet") == file_mode
    assert not [n for n in os.listdir(tmp_path / "versions") if n.startswith(".tmp-")]


def test_an_exclusive_create_still_refuses_an_existing_name(tmp_path: Path) -> None:
    fs = LocalFS()
    fs.create_exclusive(str(tmp_path / "v1.json"), b"first")
    with pytest.raises(FileExistsError):
        fs.create_exclusive(str(tmp_path / "v1.json"), b"second")
    assert (tmp_path / "v1.json").read_bytes() == b"first"


def test_a_folder_under_a_file_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(StoreNotWritable, match="plain-file"):
        LocalFS().check_writable(str(tmp_path / "plain-file" / "store"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through folder permissions")
def test_a_read_only_folder_is_not_writable(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreNotWritable, match="permission denied"):
            LocalFS().check_writable(str(folder))
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("where", ["store", "cards_dir"])
def test_a_run_whose_store_or_cards_folder_cannot_be_written_fails_in_one_line(
    tmp_path: Path, where: str
) -> None:
    write_corpus(tmp_path)
    (tmp_path / "plain-file").write_text("not a folder")
    recipe = {
        "name": "tiny",
        "store": "store",
        "cards_dir": "cards",
        "sources": [{"name": "tiny", "path": "dialogues.jsonl", "characters": "characters.jsonl"}],
        where: "plain-file/inside",
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write to" in lines[0]
    assert str(tmp_path / "plain-file" / "inside") in lines[0]
    assert not (tmp_path / "store" / "tiny" / "versions").exists()


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="libc calls are Linux-only")
def test_libc_calls_are_found_without_starting_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # `ctypes.util.find_library` runs `ldconfig -p`: a fork of a worker of hundreds of MB.
    import subprocess

    import pipeline.store.fs as fs_module

    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse, raising=False)
    fs_module._linux_libc.cache_clear()
    try:
        for name in ("madvise", "malloc_trim", "sync_file_range"):
            assert fs_module._linux_libc(name) is not None
        fs_module.release_free_memory()
    finally:
        fs_module._linux_libc.cache_clear()


def test_an_output_written_whole_appears_only_on_close(tmp_path: Path) -> None:
    import pyarrow as pa

    path = tmp_path / "out" / "part.arrow"
    path.parent.mkdir()
    path.write_bytes(b"old")
    table = pa.table({"a": [1, 2, 3]})
    sink = LocalFS().open_output_whole(str(path))
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert path.read_bytes() == b"old"  # a reader meanwhile sees the old bytes
    sink.close()
    sink.close()  # a second close changes nothing
    assert pa.ipc.open_file(str(path)).read_all().equals(table)
    assert sorted(p.name for p in path.parent.iterdir()) == ["part.arrow"]
