"""What a version is pinned to: every input file (media included) by sha256, and the code,
so an unchanged rerun can be recognised from hashes alone (no Ray here)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.execution.provenance import (
    code_version,
    input_entries,
    pinned_file,
    unchanged_inputs,
)
from pipeline.store.manifest import CodeVersion
from tests.fixtures.media import image_bytes
from tests.pipeline.execution.datajob_corpus import ORIGINALS, make_recipe, write_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    write_corpus(tmp_path)
    return tmp_path


def test_inputs_list_every_media_file_the_records_name_with_its_sha256(corpus: Path) -> None:
    entries = input_entries(make_recipe(corpus))
    kinds = {e.path: e.kind for e in entries if e.kind != "media"}
    assert kinds == {"dialogues.jsonl": "dialogue", "characters.jsonl": "characters"}
    media = {e.path: e for e in entries if e.kind == "media"}
    expected = {f"images/{i}.png" for i in range(ORIGINALS) if i % 3 == 0}
    expected |= {f"audio/{i}.wav" for i in range(ORIGINALS) if i % 4 == 1}
    expected |= {"images/corrupt.png", "images/999.png"}
    assert set(media) == expected
    for path, entry in media.items():
        if path == "images/999.png":
            # Named by the record the reader rejects: pinned as missing, so its arrival counts.
            assert (entry.sha256, entry.bytes) == (None, None)
            continue
        data = (corpus / path).read_bytes()
        assert (entry.sha256, entry.bytes) == (hashlib.sha256(data).hexdigest(), len(data))


def test_unchanged_inputs_hold_until_a_media_file_behind_the_same_dialogues_changes(
    corpus: Path,
) -> None:
    recipe = make_recipe(corpus)
    recorded = input_entries(recipe)
    assert unchanged_inputs(recipe, recorded)
    (corpus / "images/3.png").write_bytes(image_bytes("PNG", 8, 200))
    assert not unchanged_inputs(recipe, recorded)


def test_a_missing_media_file_that_appears_is_a_change(corpus: Path) -> None:
    recipe = make_recipe(corpus)
    recorded = input_entries(recipe)
    (corpus / "images/999.png").write_bytes(image_bytes("PNG", 8, 1))
    assert not unchanged_inputs(recipe, recorded)


def test_a_retargeted_media_symlink_is_a_change(corpus: Path) -> None:
    # DVC-style checkouts swap a link's target; the path the corpus names stays the same.
    (corpus / "images/v1.png").write_bytes(image_bytes("PNG", 8, 10))
    (corpus / "images/v2.png").write_bytes(image_bytes("PNG", 8, 20))
    (corpus / "images/3.png").unlink()
    os.symlink("v1.png", corpus / "images/3.png")
    recipe = make_recipe(corpus)
    recorded = input_entries(recipe)
    assert "images/3.png" in {e.path for e in recorded}
    (corpus / "images/3.png").unlink()
    os.symlink("v2.png", corpus / "images/3.png")
    assert not unchanged_inputs(recipe, recorded)


def test_a_changed_dialogue_file_is_a_change_and_older_manifests_never_match(
    corpus: Path,
) -> None:
    recipe = make_recipe(corpus)
    recorded = input_entries(recipe)
    # Written before media were pinned: nothing proves the media unchanged.
    assert not unchanged_inputs(recipe, [e.model_copy(update={"kind": None}) for e in recorded])
    write_corpus(corpus, extra=1)
    assert not unchanged_inputs(recipe, recorded)


def test_each_file_is_hashed_once_while_its_stat_holds(tmp_path: Path, hashed: list[str]) -> None:
    old = tmp_path / "old.bin"
    old.write_bytes(b"a" * 100)
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))  # long past the racy window
    expected = (hashlib.sha256(b"a" * 100).hexdigest(), 100)
    assert pinned_file(str(old)) == pinned_file(str(old)) == expected
    assert len(hashed) == 1
    old.write_bytes(b"b" * 100)  # same size: the new mtime and ctime tell
    assert pinned_file(str(old))[0] == hashlib.sha256(b"b" * 100).hexdigest()
    assert len(hashed) == 2


def test_a_file_written_within_the_racy_window_is_hashed_every_time(
    tmp_path: Path, hashed: list[str]
) -> None:
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"x")
    pinned_file(str(fresh))
    pinned_file(str(fresh))
    assert len(hashed) == 2


def test_the_code_version_carries_a_source_digest_and_its_identity_ignores_the_commit() -> None:
    code = code_version()
    assert code.source_sha256 is not None and len(code.source_sha256) == 64
    assert code.libraries["albumentations"] and code.libraries["python"]
    recommitted = code.model_copy(update={"git_commit": "0" * 40})
    assert recommitted.identity() == code.identity()
    edited = code.model_copy(update={"source_sha256": "0" * 64})
    assert edited.identity() != code.identity()
    # Manifests from before the digest keep their JSON (and so their manifest_sha256).
    assert "source_sha256" not in CodeVersion(roleforge="0.1.0").model_dump(mode="json")
