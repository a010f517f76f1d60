"""The pin cache: input files' sha256 kept by their stat across runs, so a rerun reads only
the files whose stat changed; `rehash` reads every one again. Each "next run" here starts
from a process that knows no pin (`forget_pins`), as a fresh `roleforge run` does."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipeline.execution import provenance
from pipeline.execution.job import DataJob, RunResult
from pipeline.execution.provenance import PinCache, forget_pins, pinned_file
from pipeline.execution.unchanged import unchanged_run
from pipeline.store.fs import LocalFS
from tests.pipeline.execution.datajob_corpus import make_recipe, write_corpus

LONG_AGO_NS = 1_000_000_000  # an mtime far outside the racy window


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # This test's pins only, and none left behind for the other tests of the session.
    monkeypatch.setattr(provenance, "_hashed", {})
    monkeypatch.setattr(provenance, "_fresh", set())


def _old_file(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    os.utime(path, ns=(LONG_AGO_NS, LONG_AGO_NS))
    return str(path)


def _next_run(cache: PinCache) -> None:
    """Start over as a new process that loads the kept pins."""
    forget_pins()
    cache.load()


def test_a_file_whose_stat_is_unchanged_is_not_read_again_in_the_next_run(
    tmp_path: Path, hashed: list[str]
) -> None:
    path = _old_file(tmp_path / "a.bin", b"a" * 100)
    cache = PinCache(str(tmp_path / "cache" / "pins.json"), LocalFS())
    assert pinned_file(path) == (hashlib.sha256(b"a" * 100).hexdigest(), 100)
    cache.save([path])
    _next_run(cache)
    assert pinned_file(path) == (hashlib.sha256(b"a" * 100).hexdigest(), 100)
    assert hashed == [path]


def test_a_same_size_edit_that_restores_the_mtime_is_read_again(
    tmp_path: Path, hashed: list[str]
) -> None:
    path = _old_file(tmp_path / "a.bin", b"a" * 100)
    cache = PinCache(str(tmp_path / "pins.json"), LocalFS())
    pinned_file(path)
    cache.save([path])
    # Same size, mtime set back to the pinned one: the ctime (now) still differs.
    _old_file(tmp_path / "a.bin", b"b" * 100)
    _next_run(cache)
    assert pinned_file(path)[0] == hashlib.sha256(b"b" * 100).hexdigest()
    assert hashed == [path, path]


def test_a_file_written_within_the_racy_window_is_not_kept(
    tmp_path: Path, hashed: list[str]
) -> None:
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"x")
    cache = PinCache(str(tmp_path / "pins.json"), LocalFS())
    pinned_file(str(fresh))
    cache.save([str(fresh)])
    assert json.loads((tmp_path / "pins.json").read_bytes())["pins"] == {}
    _next_run(cache)
    pinned_file(str(fresh))
    assert len(hashed) == 2


def test_an_unreadable_pin_cache_costs_hashing_not_a_wrong_pin(
    tmp_path: Path, hashed: list[str]
) -> None:
    path = _old_file(tmp_path / "a.bin", b"a")
    (tmp_path / "pins.json").write_text("{not json", encoding="utf-8")
    cache = PinCache(str(tmp_path / "pins.json"), LocalFS())
    assert cache.load() == 0
    assert pinned_file(path)[0] == hashlib.sha256(b"a").hexdigest()
    assert hashed == [path]


@pytest.mark.usefixtures("ray_session")
class TestAcrossRuns:
    @pytest.fixture
    def first(self, tmp_path: Path) -> tuple[Path, RunResult]:
        write_corpus(tmp_path)
        for folder in ("images", "audio"):
            for name in os.listdir(tmp_path / folder):
                os.utime(tmp_path / folder / name, ns=(LONG_AGO_NS, LONG_AGO_NS))
        return tmp_path, DataJob(make_recipe(tmp_path)).run()

    def test_an_unchanged_rerun_reads_no_media_file_the_run_before_pinned(
        self, first: tuple[Path, RunResult], hashed: list[str]
    ) -> None:
        folder, result = first
        forget_pins()  # a new process: only the store's pins.json knows the media
        again = unchanged_run(make_recipe(folder))
        assert again is not None and again.unchanged
        assert (again.version, again.content_id) == (result.version, result.content_id)
        media = [p for p in hashed if "/images/" in p or "/audio/" in p]
        assert media == []

    def test_a_same_size_media_edit_with_its_mtime_restored_is_not_unchanged(
        self, first: tuple[Path, RunResult], hashed: list[str]
    ) -> None:
        folder, _ = first
        target = folder / "images/3.png"
        edited = bytearray(target.read_bytes())
        edited[-1] ^= 0xFF  # same size, other bytes
        _old_file(target, bytes(edited))
        forget_pins()
        assert unchanged_run(make_recipe(folder)) is None
        assert str(target) in hashed

    def test_rehash_reads_every_media_file_again(
        self, first: tuple[Path, RunResult], hashed: list[str]
    ) -> None:
        folder, result = first
        forget_pins()
        again = unchanged_run(make_recipe(folder), rehash=True)
        assert again is not None and again.content_id == result.content_id
        pinned = [
            os.path.join(str(folder), e.path)
            for e in DataJob(make_recipe(folder)).store.manifest().inputs
            if e.kind == "media" and e.sha256 is not None
        ]
        assert pinned and set(pinned) <= set(hashed)
