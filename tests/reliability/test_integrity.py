"""Integrity: every kind of edit or corruption of a committed version is caught by
`verify`, and the readers of a version (train, show, the store's read API) refuse it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.store.read import Store, VersionCorrupt
from tests.pipeline.execution.datajob_corpus import write_corpus
from tests.reliability.conftest import NAME, cli, recipe_dict, run_json

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one committed version of the tiny corpus (made once for the module)."""
    folder = tmp_path_factory.mktemp("integrity")
    write_corpus(folder)
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict()), encoding="utf-8")
    assert run_json(recipe)["version"] == 1
    return folder / "store"


def _shard(vdir: Path, manifest: dict[str, Any]) -> Path:
    return vdir / next(s["path"] for s in manifest["shards"] if s["split"] == "train")


def _flip_middle_byte(vdir: Path, m: dict[str, Any]) -> None:
    path = _shard(vdir, m)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(vdir: Path, m: dict[str, Any]) -> None:
    path = _shard(vdir, m)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _extend(vdir: Path, m: dict[str, Any]) -> None:
    with _shard(vdir, m).open("ab") as f:
        f.write(b"\0")


def _delete(vdir: Path, m: dict[str, Any]) -> None:
    _shard(vdir, m).unlink()


def _edit_card(vdir: Path, m: dict[str, Any]) -> None:
    card = vdir / "README.md"
    card.write_text(card.read_text(encoding="utf-8") + "\nedited\n", encoding="utf-8")


def _edit_manifest(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, dict], None]:
    def edit(vdir: Path, m: dict[str, Any]) -> None:
        change(m)
        (vdir.parent / "v1.json").write_text(json.dumps(m, indent=2), encoding="utf-8")

    return edit


CORRUPTIONS = {
    "a flipped byte in a shard": _flip_middle_byte,
    "a truncated shard": _truncate,
    "an extended shard": _extend,
    "a deleted shard": _delete,
    "an edited card": _edit_card,
    "an edited count": _edit_manifest(lambda m: m["counts"]["ingest"].update({"in": 999})),
    "an edited split size": _edit_manifest(lambda m: m["splits"].update({"train": 1})),
    "an edited seed": _edit_manifest(lambda m: m["recipe"].update({"seed": 8})),
    "an edited shard hash": _edit_manifest(lambda m: m["shards"][0].update({"sha256": "0" * 64})),
    "a removed digest": _edit_manifest(lambda m: m.pop("manifest_sha256")),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_verify_catches_every_edit_and_readers_refuse_it_with_one_line(
    published: Path, tmp_path: Path, corruption: str
) -> None:
    store_dir = tmp_path / "store"
    shutil.copytree(published, store_dir)
    vdir = store_dir / NAME / "versions" / "v1"
    manifest = json.loads((vdir.parent / "v1.json").read_text(encoding="utf-8"))
    CORRUPTIONS[corruption](vdir, manifest)

    verify = cli("verify", f"{NAME}@v1", "--store", store_dir)
    assert verify.exit_code == 1, verify.output

    store = Store(str(store_dir), NAME)
    with pytest.raises(VersionCorrupt, match=r"tiny@v1 is corrupt"):
        store.checked_manifest(1)  # what train and export read through
    train = cli("train", f"{NAME}@v1", "--store", store_dir)
    assert train.exit_code == 1
    assert train.output.strip().count("\n") == 0 and "corrupt" in train.output, train.output
    assert train.exception is None or isinstance(train.exception, SystemExit)


def test_an_intact_version_verifies_and_reads(published: Path) -> None:
    assert cli("verify", f"{NAME}@v1", "--store", published).exit_code == 0
    assert Store(str(published), NAME).checked_manifest(1).version == 1
    shown = cli("show", f"{NAME}@v1", "--store", published, "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["version"] == 1


def test_show_refuses_a_manifest_whose_numbers_were_edited(published: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    shutil.copytree(published, store_dir)
    vdir = store_dir / NAME / "versions" / "v1"
    manifest = json.loads((vdir.parent / "v1.json").read_text(encoding="utf-8"))
    _edit_manifest(lambda m: m["splits"].update({"train": 10_000}))(vdir, manifest)
    shown = cli("show", f"{NAME}@v1", "--store", store_dir)
    assert shown.exit_code == 1 and "corrupt" in shown.output
    assert shown.output.strip().count("\n") == 0
