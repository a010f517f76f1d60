"""`roleforge inspect` and the card's Quality section over a committed version's quality column."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cards.write import README, write_cards
from pipeline.cli.app import app
from pipeline.record.ids import file_sha256
from pipeline.record.schema import RECORD_SCHEMA
from pipeline.stages.base import BatchContext
from pipeline.stages.quality.config import NearDupConfig, QualityConfig
from pipeline.stages.quality.near_dup import NearDupStage
from pipeline.stages.quality.planner import plan_near_duplicates
from pipeline.stages.quality.signatures import near_dup_signatures
from pipeline.stages.quality.stages import lint_stages
from pipeline.store.fs import LocalFS
from pipeline.store.manifest import MANIFEST_FORMAT, ShardEntry, content_id, schema_sha256
from pipeline.store.row_digest import add_row_digests
from tests.pipeline.cards.test_cards import make_manifest

from .corpus import clean_chinese, clean_pippa, table
from .test_near_dup import _edited

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with demo-roleplay@v1: one train shard whose records went through the stages."""
    slop = clean_pippa("slop")
    slop["messages"][-1]["content"] = "A shiver ran down his spine, barely above a whisper."
    batch = table(clean_pippa("a"), _edited("b"), clean_chinese("c"), slop)
    config = QualityConfig(language_mismatch={"policy": "off"})
    for stage in lint_stages(config):
        batch = stage.process(batch, BatchContext()).table
    plan = plan_near_duplicates(near_dup_signatures(batch, NearDupConfig()), NearDupConfig())
    batch = NearDupStage(plan).process(batch, BatchContext()).table
    batch = batch.drop_columns(["source_ref"]).set_column(
        batch.schema.get_field_index("split"), "split", [["train"] * batch.num_rows]
    )
    root = tmp_path_factory.mktemp("store")
    vdir = root / "demo-roleplay" / "versions" / "v1"
    vdir.mkdir(parents=True)
    shard = vdir / "train-00000-of-00001.parquet"
    pq.write_table(batch.cast(RECORD_SCHEMA), shard)
    entry = ShardEntry(
        path=shard.name,
        split="train",
        rows=batch.num_rows,
        bytes=os.path.getsize(shard),
        sha256=file_sha256(str(shard)),
    )
    schema_hash = schema_sha256(RECORD_SCHEMA)
    (entry,), rows = add_row_digests(str(vdir), [entry], LocalFS())
    manifest = (
        make_manifest([entry], version=1, parent=None)
        .model_copy(
            update={
                "schema_sha256": schema_hash,
                "content_id": content_id(schema_hash, rows),
                "format": MANIFEST_FORMAT,
            }
        )
        .sealed()
    )
    (vdir.parent / "v1.json").write_bytes(manifest.to_json_bytes())
    return root, vdir, manifest


def test_inspect_json_counts_flags_per_source_and_character_and_lists_clusters(store):
    root, _, _ = store
    result = runner.invoke(app, ["inspect", "demo-roleplay@v1", "--store", str(root), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["records"] == 4
    slop = data["flags"]["slop"]
    assert slop["records"] == 1
    assert slop["by_source_character"] == [
        {"source": "pippa", "character": "Marlowe the Lighthouse Keeper", "records": 1}
    ]
    assert slop["examples"][0]["record_id"] == "slop"
    assert data["clusters"] == [{"cluster": "a", "members": ["a", "b"]}]
    assert all(p["modality"] == "text" and p["similarity"] >= 0.8 for p in data["pairs"])


def test_inspect_duplicates_alone_prints_clusters_with_similarity(store):
    root, _, _ = store
    result = runner.invoke(
        app, ["inspect", "demo-roleplay@v1", "--store", str(root), "--duplicates"]
    )
    assert result.exit_code == 0, result.output
    assert "near-duplicate clusters: 1" in result.output
    assert "text 0." in result.output and "slop:" not in result.output


def test_the_card_gains_a_quality_section_with_the_same_counts(store):
    _, vdir, manifest = store
    write_cards(str(vdir), manifest, None, None)
    card = (vdir / README).read_text(encoding="utf-8")
    section = card.split("## Quality", 1)[1]
    assert "`slop`" in section and "Near-duplicate clusters: 1" in section
