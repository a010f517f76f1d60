"""The data-job commands: run, versions, show, diff, verify and gc, as a user calls them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.shards import read_shard_batches
from tests.pipeline.execution.datajob_corpus import AUGMENT, write_corpus

pytestmark = pytest.mark.usefixtures("ray_session")
runner = CliRunner()
EXTRA = 3


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _ids(version_dir: Path, manifest: dict[str, Any]) -> set[str]:
    ids: set[str] = set()
    for shard in manifest["shards"]:
        for batch in read_shard_batches(str(version_dir / shard["path"])):
            ids.update(pa.Table.from_batches([batch])["id"].to_pylist())
    return ids


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the CLI twice: the corpus, then the corpus with EXTRA more dialogues."""
    folder = tmp_path_factory.mktemp("cli")
    write_corpus(folder)
    recipe = {
        "name": "tiny",
        "store": "store",
        "cards_dir": "cards",
        "seed": 7,
        "sources": [{"name": "tiny", "path": "dialogues.jsonl", "characters": "characters.jsonl"}],
        "split": {"validation": 0.2, "test": 0.2},
        "augment": AUGMENT,
        "output": {"format": "parquet", "shard_size": "64MB"},
        "max_bad_fraction": 0.1,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    first = _invoke("run", str(path), "--json")
    assert first.exit_code == 0, first.output
    write_corpus(folder, extra=EXTRA)
    second = _invoke("run", str(path), "--json")
    assert second.exit_code == 0, second.output
    return {
        "folder": folder,
        "recipe": path,
        "store": str(folder / "store"),
        "v1": json.loads(first.stdout),
        "v2": json.loads(second.stdout),
    }


def test_run_json_names_the_version_its_content_and_the_counts_per_stage(two_versions) -> None:
    v1, v2 = two_versions["v1"], two_versions["v2"]
    assert set(v1) == {
        "name",
        "version",
        "content_id",
        "path",
        "unchanged",
        "splits",
        "split_groups",
        "counts",
        "unmapped_fields",
        "reused",
        "computed",
        "nodes",
    }
    assert set(v1["nodes"]) >= {"ingest", "records", "write"}  # tasks per pass per node
    # Counts of original records: the first run has nothing to reuse.
    assert v1["reused"] == 0 and v1["computed"] > 0
    # Groups per split: records of the tiny corpus are their own groups (by conversation).
    assert v1["split_groups"]["validation"] >= 1 and v1["split_groups"]["test"] >= 1
    assert (v1["version"], v2["version"]) == (1, 2)
    assert not v1["unchanged"] and v1["content_id"] != v2["content_id"]
    assert set(v1["counts"]) == {"ingest", "validate", "dedup", "split", "augment", "write"}
    assert sorted(os.listdir(v1["path"]))[-3:] == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]


def test_run_prints_a_summary_and_says_when_nothing_changed(two_versions) -> None:
    result = _invoke("run", str(two_versions["recipe"]))
    assert result.exit_code == 0, result.output
    assert "unchanged" in result.stdout and "v2" in result.stdout
    assert "records per stage" in result.stdout
    v2 = two_versions["v2"]
    reused = v2["reused"] + v2["computed"]  # found unchanged: every original of v2's run
    assert f"original records: {reused} reused, 0 computed" in result.stdout


def test_versions_lists_each_committed_version(two_versions) -> None:
    result = _invoke("versions", "tiny", "--store", two_versions["store"], "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["versions"]
    assert [v["version"] for v in listed] == [1, 2]
    assert listed[1]["parent_version"] == 1
    assert listed[1]["content_id"] == two_versions["v2"]["content_id"]
    table = _invoke("versions", "tiny", "--recipe", str(two_versions["recipe"]))
    assert table.exit_code == 0 and "v2" in table.stdout


def test_store_defaults_to_the_environment_then_the_working_folder(
    two_versions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLEFORGE_STORE", two_versions["store"])
    assert json.loads(_invoke("show", "tiny@v1", "--json").stdout)["version"] == 1
    monkeypatch.delenv("ROLEFORGE_STORE")
    monkeypatch.chdir(two_versions["folder"] / "cards")
    missing = _invoke("show", "tiny")
    assert missing.exit_code == 1 and "no committed version" in missing.stderr


def test_show_prints_the_manifest_of_a_version(two_versions) -> None:
    store = two_versions["store"]
    manifest = json.loads(_invoke("show", "tiny@v1", "--store", store, "--json").stdout)
    assert manifest["content_id"] == two_versions["v1"]["content_id"]
    assert manifest["code_version"]["libraries"]["pyarrow"] == pa.__version__
    latest = _invoke("show", "tiny", "--store", store)
    assert latest.exit_code == 0 and "tiny@v2" in latest.stdout
    absent = _invoke("show", "tiny@v7", "--store", store)
    assert absent.exit_code == 1 and "v7" in absent.stderr


def test_diff_reports_records_added_removed_changed_and_split_deltas(two_versions) -> None:
    store = two_versions["store"]
    result = _invoke("diff", "tiny@v1", "tiny@v2", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    root = Path(store) / "tiny" / "versions"
    m1, m2 = (json.loads((root / f"v{v}.json").read_text()) for v in (1, 2))
    ids1, ids2 = _ids(root / "v1", m1), _ids(root / "v2", m2)
    assert set(diff["added"]) == ids2 - ids1 and len(diff["added"]) >= EXTRA
    assert set(diff["removed"]) == ids1 - ids2
    assert set(diff["changed"]) <= ids1 & ids2
    for split in ("train", "validation", "test"):
        rows = diff["splits"][split]["rows"]
        assert (rows["before"], rows["after"]) == (m1["splits"][split], m2["splits"][split])
    table = _invoke("diff", "tiny@v1", "tiny@v2", "--store", store)
    assert table.exit_code == 0 and "added" in table.stdout


def test_verify_catches_a_flipped_byte_and_a_truncated_shard(two_versions) -> None:
    store = two_versions["store"]
    assert _invoke("verify", "tiny@v1", "--store", store).exit_code == 0
    shard = Path(two_versions["v1"]["path"]) / "train-00000-of-00001.parquet"
    original = shard.read_bytes()
    try:
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0xFF
        shard.write_bytes(bytes(flipped))
        result = _invoke("verify", "tiny@v1", "--store", store, "--json")
        assert result.exit_code == 1
        problem, *rows = json.loads(result.stdout)["problems"]
        assert problem["problem"] == "sha256" and problem["path"] == shard.name
        # The rows of a shard with a flipped byte are recomputed too: each that no longer
        # reads as written is named (or the shard is unreadable).
        assert all(p["path"].startswith(shard.name) for p in rows)
        assert all(p["problem"] in ("row", "unreadable") for p in rows)

        shard.write_bytes(original[:-100])
        result = _invoke("verify", "tiny@v1", "--store", store)
        assert result.exit_code == 1 and "size" in result.stdout
    finally:
        shard.write_bytes(original)
    assert _invoke("verify", "tiny@v1", "--store", store).exit_code == 0


def test_gc_removes_unreferenced_staging_versions_and_quarantine_but_keeps_models(
    two_versions,
) -> None:
    root = Path(two_versions["store"]) / "tiny"
    (root / "_staging" / "dead-run").mkdir(parents=True)
    (root / "versions" / "v9").mkdir()
    (root / "versions" / "v1" / "stray.tmp").write_text("x")
    (root / "models" / "run-1").mkdir(parents=True)  # a finished model: gc keeps it
    (root / "models" / "run-1" / "run.json").write_text('{"status": "done"}')
    gc_args = ("gc", "tiny", "--store", two_versions["store"], "--min-age", "0")
    dry = _invoke(*gc_args, "--dry-run", "--json")
    planned = json.loads(dry.stdout)["removed"]
    assert {"_staging/dead-run", "versions/v9", "versions/v1/stray.tmp"} <= set(planned)
    assert (root / "versions" / "v9").exists()
    done = _invoke(*gc_args)
    assert done.exit_code == 0, done.output
    assert not (root / "versions" / "v9").exists()
    assert not (root / "_staging" / "dead-run").exists()
    assert (root / "models" / "run-1").exists()
    # Each remaining quarantine file belongs to a committed version.
    referenced = {
        os.path.basename(
            json.loads((root / "versions" / f"v{v}.json").read_text())["quarantine"]["path"]
        )
        for v in (1, 2)
    }
    assert set(os.listdir(root / "quarantine")) == referenced
    assert _invoke("verify", "tiny", "--store", two_versions["store"]).exit_code == 0
