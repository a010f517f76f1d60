"""A published version loads wherever users load data: every format x every tool.

The corpus is 8 conversations, small enough that hashing each one against fixed fractions
(the old split rule) leaves a split empty for the seed used here; the count cut gives every
split a group, and no split is published without rows. Each (format, tool) pair is one test,
so `pytest -v` prints the load matrix.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.execution.job import DataJob
from pipeline.recipe import SplitConfig
from pipeline.record.schema import SPLITS
from pipeline.stages.split import SplitStage
from pipeline.store.read import Store
from tests.pipeline.execution.datajob_corpus import make_recipe, write_corpus

pytestmark = pytest.mark.usefixtures("ray_session")

RECORDS = 8
FORMATS = ("parquet", "arrow")
TOOLS = (
    "datasets.load_dataset",
    "datasets.streaming",
    "datasets.Dataset.from_file|from_parquet",
    "pyarrow",
    "polars",
    "duckdb",
    "ray.data",
    "mlcroissant",
)
SPLIT = SplitConfig(validation=0.1, test=0.1)


def _hash_threshold_split(seed: int, record_id: str) -> str:
    """The old rule: one fixed point per group against the fractions, no count."""
    u = SplitStage(SPLIT, seed).point("conversation:" + record_id) / 2**64
    if u < SPLIT.validation:
        return "validation"
    return "test" if u < SPLIT.validation + SPLIT.test else "train"


def _small_corpus(folder: Path) -> None:
    """Write the data-job corpus and keep its first RECORDS clean dialogues (images on
    0, 3, 6; audio on 1, 5)."""
    dialogues = write_corpus(folder)
    lines = dialogues.read_text(encoding="utf-8").splitlines()[:RECORDS]
    dialogues.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Store, int, Path]]:
    folder = tmp_path_factory.mktemp("load-matrix")
    _small_corpus(folder)
    out = {}
    for fmt in FORMATS:
        recipe = make_recipe(
            folder,
            store=f"store-{fmt}",
            cards_dir=f"cards-{fmt}",
            split=SPLIT.model_dump(),
            augment={"copies": 1, "dialogue": [{"op": "ContextWindow", "p": 1.0}]},
            output={"format": fmt},
            max_bad_fraction=0.0,
        )
        result = DataJob(recipe).run()
        out[fmt] = (Store(str(folder / f"store-{fmt}"), "tiny"), result.version, Path(result.path))
    return out


def test_the_corpus_would_leave_a_split_empty_under_plain_hashing_but_not_here(versions) -> None:
    store, version, _ = versions["parquet"]
    manifest = store.manifest(version)
    seed = manifest.recipe["seed"]
    ids = [r for s in SPLITS for r in _ids(store, version, s, originals_only=True)]
    assert len(ids) == RECORDS
    old = {_hash_threshold_split(seed, i) for i in ids}
    assert old != set(SPLITS), "the premise: plain hashing leaves a split empty"
    assert manifest.split_groups == {"train": 6, "validation": 1, "test": 1}
    assert {s.split for s in manifest.shards} == set(SPLITS)
    assert all(s.rows > 0 for s in manifest.shards)
    # Both formats hold the same records, split the same way.
    other, other_version, _ = versions["arrow"]
    assert other.manifest(other_version).splits == manifest.splits


def _ids(store: Store, version: int, split: str, originals_only: bool = False) -> list[str]:
    from pipeline.store.shards import read_shard

    ids = []
    for path in store.shard_paths(store.manifest(version), split):
        table = read_shard(path)
        if originals_only:
            table = table.filter(pa.compute.is_null(table["parent_id"]))
        ids += table["id"].to_pylist()
    return ids


def _expected(store: Store, version: int) -> dict[str, int]:
    return dict(store.manifest(version).splits)


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_published_version_loads(versions, tmp_path: Path, fmt: str, tool: str) -> None:
    store, version, vdir = versions[fmt]
    expected = _expected(store, version)
    shards = {s: store.shard_paths(store.manifest(version), s) for s in SPLITS}
    all_shards = [p for s in SPLITS for p in shards[s]]
    LOADERS[tool](fmt, vdir, shards, all_shards, expected, tmp_path)


def _load_dataset(fmt, vdir, shards, all_shards, expected, tmp_path) -> None:
    import datasets
    from PIL import Image

    ds = datasets.load_dataset(str(vdir), cache_dir=str(tmp_path / "hf"))
    assert {s: ds[s].num_rows for s in ds} == expected
    features = ds["train"].features
    assert isinstance(features["images"].feature, datasets.Image)
    assert isinstance(features["audios"].feature, datasets.Audio)
    # Without torchcodec + FFmpeg, audio stays undecoded: the README's cast.
    raw = ds.cast_column("audios", datasets.List(datasets.Audio(decode=False)))
    images = [img for row in raw["train"] for img in row["images"]]
    assert images and all(isinstance(i, Image.Image) for i in images)
    clips = [a for s in raw for row in raw[s] for a in row["audios"]]
    assert clips and all(c["bytes"][:4] == b"RIFF" for c in clips)


def _streaming(fmt, vdir, shards, all_shards, expected, tmp_path) -> None:
    import datasets

    ds = datasets.load_dataset(str(vdir), streaming=True, cache_dir=str(tmp_path / "hf"))
    assert {s: sum(1 for _ in ds[s].select_columns(["id"])) for s in ds} == expected


def _from_file(fmt, vdir, shards, all_shards, expected, tmp_path) -> None:
    import datasets

    for split, paths in shards.items():
        if fmt == "parquet":  # from_file maps Arrow IPC streams; Parquet has from_parquet
            parts = [datasets.Dataset.from_parquet(paths, cache_dir=str(tmp_path / "hf"))]
        else:
            parts = [datasets.Dataset.from_file(p) for p in paths]
        assert sum(p.num_rows for p in parts) == expected[split]
        assert isinstance(parts[0].features["images"].feature, datasets.Image)


def _pyarrow(fmt, vdir, shards, all_shards, expected, tmp_path) -> None:
    import pyarrow.dataset as pads

    if fmt == "parquet":
        table = pads.dataset(all_shards, format="parquet").to_table(columns=["id", "split"])
    else:
        # pyarrow.dataset reads the IPC *file* format only; streams open with pyarrow.ipc.
        table = pa.concat_tables(pa.ipc.open_stream(p).read_all() for p in all_shards)
    assert dict(zip(*_value_counts(table["split"]), strict=True)) == expected


def _value_counts(column: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    counts = column.value_counts().to_pylist()
    return [c["values"] for c in counts], [c["counts"] for c in counts]


def _polars(fmt, vdir, shards, all_shards, expected, tmp_path) -> None:
    import polars as pl

    if fmt == "parquet":
        frame = pl.scan_parquet(all_shards).select("split").collect()
    else:
        frame = pl.concat([pl.read_ipc_stream(p, columns=["split"]) for p in all_shards])
    assert dict(frame.group_by("split").len().iter_rows()) == expected
    assert frame.height == sum(expected.values())


def _duckdb(fmt, vdir, shards, all_shards, expected, tmp_path) -> None:
    duckdb = pytest.importorskip("duckdb")

    con = duckdb.connect()
    if fmt == "parquet":
        rows = con.execute(
            "select split, count(*) from read_parquet(?) group by split", [all_shards]
        ).fetchall()
    else:
        # DuckDB has no Arrow IPC file reader built in; it scans a pyarrow stream reader.
        con.register(
            "shards", pa.concat_tables(pa.ipc.open_stream(p).read_all() for p in all_shards)
        )
        rows = con.execute("select split, count(*) from shards group by split").fetchall()
    assert dict(rows) == expected


def _ray(fmt, vdir, shards, all_shards, expected, tmp_path) -> None:
    import ray.data

    from pipeline.store.read import ray_dataset

    store = Store(str(vdir.parents[2]), vdir.parents[1].name)
    version = int(vdir.name[1:])
    for split, n in expected.items():
        assert ray_dataset(store, version, split).count() == n
    if fmt == "parquet":
        assert ray.data.read_parquet(all_shards).count() == sum(expected.values())


def _mlcroissant(fmt, vdir, shards, all_shards, expected, tmp_path) -> None:
    import mlcroissant as mlc

    ds = mlc.Dataset(jsonld=str(vdir / "croissant.json"))
    assert not ds.metadata.ctx.issues.errors
    if fmt == "arrow":
        pytest.skip("mlcroissant 1.1.1 has no Arrow reader: records iterate from Parquet")
    for record_set in ds.metadata.record_sets:
        records = list(ds.records(record_set.name))
        if record_set.name == "records":
            splits = [_text(r["records/split"]) for r in records]
            assert {s: splits.count(s) for s in set(splits)} == expected
            assert any(r["records/images"] for r in records)
        else:
            assert {_text(r["splits/name"]) for r in records} == set(expected)


def _text(value: bytes | str) -> str:
    # mlcroissant gives file-backed text as bytes and inline `data` as str.
    return value.decode() if isinstance(value, bytes) else value


LOADERS = {
    "datasets.load_dataset": _load_dataset,
    "datasets.streaming": _streaming,
    "datasets.Dataset.from_file|from_parquet": _from_file,
    "pyarrow": _pyarrow,
    "polars": _polars,
    "duckdb": _duckdb,
    "ray.data": _ray,
    "mlcroissant": _mlcroissant,
}


def test_the_shards_are_not_empty_files(versions) -> None:
    for store, version, vdir in versions.values():
        names = sorted(n for n in os.listdir(vdir) if n.endswith((".parquet", ".arrow")))
        assert names == sorted(s.path for s in store.manifest(version).shards)
