"""The whole data job on Ray: determinism, no split leakage, unchanged reruns, counts,
crash safety, and a version that `datasets` loads with typed media."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.execution.job import DataJob, RunResult
from pipeline.record.rejection import TooManyBadRecords
from pipeline.store.atomic import FAULT_ENV, InjectedFault
from pipeline.store.read import Store
from pipeline.store.verify import verify_version
from tests.pipeline.execution.datajob_corpus import (
    ORIGINALS,
    make_recipe,
    published_rows,
    write_corpus,
)

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder)
    return folder


def _run(corpus: Path, store: str, **overrides: Any) -> RunResult:
    recipe = make_recipe(corpus, store=store, cards_dir=f"{store}-cards", **overrides)
    return DataJob(recipe).run()


@pytest.fixture(scope="module")
def serial(corpus: Path) -> RunResult:
    """The reference run: one task at a time, two records per batch."""
    return _run(corpus, "serial", execution={"batch_size": 2, "concurrency": 1})


def _shards(result: RunResult) -> list[Any]:
    manifest = Store(str(Path(result.path).parents[2]), result.name).manifest(result.version)
    return manifest.shards


def _shard_hashes(result: RunResult) -> list[str]:
    return [s.sha256 for s in _shards(result)]


def test_content_id_is_the_same_with_one_or_two_workers_any_shard_size_and_another_seed_changes_it(
    corpus: Path, serial: RunResult
) -> None:
    parallel = _run(
        corpus, "parallel", execution={"batch_size": 5, "concurrency": 2, "in_process_records": 0}
    )
    assert not parallel.unchanged and not serial.unchanged
    assert parallel.content_id == serial.content_id
    assert parallel.splits == serial.splits
    # Other shards, other files, the same rows: the same content id.
    cut = _run(
        corpus,
        "cut",
        execution={"batch_size": 3, "concurrency": 2},
        output={"shard_size": "2KB"},
    )
    assert len(_shard_hashes(cut)) > len(_shard_hashes(serial))
    assert set(_shard_hashes(cut)).isdisjoint(_shard_hashes(serial))
    assert cut.content_id == serial.content_id
    assert verify_version(Store(str(Path(cut.path).parents[2]), cut.name), cut.version).ok
    reseeded = _run(corpus, "reseeded", seed=8)
    assert reseeded.content_id != serial.content_id


def test_on_two_cpus_the_train_split_is_written_as_two_shards_with_the_same_content_id(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The corpus is KBs; with the floor at a byte, a split as big as it gets shards for its
    # share of the 2 CPUs, as a 195 MB split does with the real floor.
    monkeypatch.setattr("pipeline.store.writer.MIN_PARALLEL_SHARD_BYTES", 1)
    every_record_trains = {"validation": 0, "test": 0}
    in_process = _run(corpus, "one-cpu", split=every_record_trains)
    on_ray = _run(
        corpus, "two-cpus", split=every_record_trains, execution={"in_process_records": 0}
    )
    assert [s.path for s in _shards(in_process)] == ["train-00000-of-00001.parquet"]
    assert [s.path for s in _shards(on_ray)] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    assert on_ray.content_id == in_process.content_id
    assert verify_version(Store(str(Path(on_ray.path).parents[2]), on_ray.name), 1).ok


def test_stage_counts_add_up_and_name_duplicates_and_quarantined_records(
    serial: RunResult,
) -> None:
    c = serial.counts
    assert c["ingest"] == {
        "in": ORIGINALS + 4,
        "out": ORIGINALS + 3,
        "dropped": 0,
        "quarantined": 1,
    }
    assert c["validate"]["quarantined"] == 1 and c["validate"]["out"] == ORIGINALS + 2
    assert c["dedup"]["dropped"] == 2 and c["dedup"]["out"] == ORIGINALS
    assert c["augment"]["in"] == ORIGINALS and c["augment"]["variants"] > 0
    assert c["write"]["out"] == ORIGINALS + c["augment"]["variants"] == sum(serial.splits.values())
    manifest = json.loads(Path(serial.manifest_path).read_text())
    assert manifest["quarantine"]["reasons"] == {"corrupt_image": 1, "missing_media": 1}
    assert manifest["dedup"] == {"duplicates": 2}
    assert sum(manifest["originals"].values()) == ORIGINALS
    quarantined = Path(serial.path).parents[1] / manifest["quarantine"]["path"]
    stages = sorted(json.loads(line)["stage"] for line in quarantined.read_text().splitlines())
    assert stages == ["ingest", "validate"]


def test_no_augmented_copy_of_an_evaluation_record_reaches_any_split(serial: RunResult) -> None:
    rows = published_rows(serial)
    split_of = {r["id"]: r["split"] for r in rows if r["parent_id"] is None}
    variants = [r for r in rows if r["parent_id"] is not None]
    assert variants
    assert all(split_of[v["parent_id"]] == "train" == v["split"] for v in variants)
    assert {"validation", "test"} <= set(split_of.values())


def test_split_by_character_holds_out_whole_characters_variants_included(corpus: Path) -> None:
    result = _run(
        corpus, "by-character", split={"by": "character", "validation": 0.25, "test": 0.25}
    )
    splits: dict[str, set[str]] = {}
    for row in published_rows(result):
        splits.setdefault(row["character"]["name"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values()), splits


def test_an_unchanged_rerun_publishes_nothing(corpus: Path, serial: RunResult) -> None:
    again = _run(corpus, "serial", execution={"batch_size": 3})
    store = Store(str(Path(serial.path).parents[2]), serial.name)
    assert again.unchanged and again.version == serial.version
    assert again.content_id == serial.content_id
    assert store.versions() == [serial.version]
    assert sorted(os.listdir(store.versions_dir)) == [
        f"v{serial.version}",
        f"v{serial.version}.json",
    ]
    assert os.listdir(os.path.join(store.root, "_staging")) == []


def test_a_crash_during_commit_hides_the_version_and_a_rerun_gives_the_same_content(
    corpus: Path, serial: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "after_cards")
    with pytest.raises(InjectedFault):
        _run(corpus, "crashed")
    monkeypatch.delenv(FAULT_ENV)
    store = Store(str(corpus / "crashed"), "tiny")
    assert store.versions() == []
    rerun = _run(corpus, "crashed")
    assert rerun.content_id == serial.content_id and not rerun.unchanged
    assert store.versions() == [rerun.version] and verify_version(store).ok


def test_the_version_loads_through_datasets_with_typed_image_and_audio(
    corpus: Path, serial: RunResult
) -> None:
    import datasets

    loaded = datasets.load_dataset(serial.path)
    assert {k: v.num_rows for k, v in loaded.items()} == serial.splits
    features = loaded["train"].features
    assert isinstance(features["images"].feature, datasets.Image)
    assert isinstance(features["audios"].feature, datasets.Audio)
    with_image = next(r for r in loaded["test"].select_columns(["images"]) if r["images"])
    assert with_image["images"][0].size == (8, 8)
    assert (corpus / "serial-cards" / "tiny" / f"v{serial.version}.md").is_file()


def test_the_shards_read_through_ray_data_pyarrow_dataset_and_polars(serial: RunResult) -> None:
    import polars as pl
    import pyarrow.dataset as pads

    from pipeline.store.read import ray_dataset

    store = Store(str(Path(serial.path).parents[2]), serial.name)
    assert ray_dataset(store).count() == sum(serial.splits.values())
    assert ray_dataset(store, split="test").count() == serial.splits["test"]
    shards = sorted(str(p) for p in Path(serial.path).glob("*.parquet"))  # the default format
    assert pads.dataset(shards, format="parquet").count_rows() == sum(serial.splits.values())
    assert pl.scan_parquet(shards).select(pl.len()).collect().item() == sum(serial.splits.values())


def test_too_many_quarantined_records_fail_the_run_and_publish_nothing(corpus: Path) -> None:
    with pytest.raises(TooManyBadRecords, match="corrupt_image"):
        _run(corpus, "strict", max_bad_fraction=0.05)
    store = Store(str(corpus / "strict"), "tiny")
    assert store.versions() == []
    assert os.listdir(os.path.join(store.root, "_staging")) == []
    (quarantine,) = os.listdir(os.path.join(store.root, "quarantine"))
    assert quarantine.endswith(".jsonl")
