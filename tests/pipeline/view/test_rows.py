"""Reading a version's rows on demand: filtered pages, paging by position, records and media.

The demo shards hold their rows in no id order (conftest.shard_order), as the writer leaves
them, so each test here also says that the viewer needs no order."""

from __future__ import annotations

import os

import pytest

from pipeline.view.rows import PageToken, RowFilter, ShardRowsMismatch, VersionRows
from tests.pipeline.view.conftest import SCRIPT_TURN, build_demo_store, shard_order


@pytest.fixture(params=["parquet", "arrow"])
def demo(request, tmp_path):
    return build_demo_store(str(tmp_path / "store"), fmt=request.param, models=False)


def _rows(demo, version: int = 1) -> VersionRows:
    return VersionRows(demo.store, demo.store.manifest(version))


def _all_ids(rows: VersionRows, where: RowFilter, size: int) -> list[str]:
    ids, after = [], None
    while True:
        page = rows.page(where, after, size)
        assert len(page.rows) <= size
        ids += [r["id"] for r in page.rows]
        if page.next is None:
            return ids
        after = page.next


def _in_shard_order(records: list[dict]) -> list[str]:
    """Return the ids of `records` as the viewer pages them: train shard, then test."""
    return [
        r["id"]
        for split in ("train", "test")
        for r in shard_order([r for r in records if r["split"] == split])
    ]


def test_the_demo_shards_hold_their_rows_in_no_id_order(demo):
    train = [r["id"] for r in shard_order([r for r in demo.records if r["split"] == "train"])]
    assert train != sorted(train)
    assert _all_ids(_rows(demo), RowFilter(split="train"), size=100) == train


def test_paging_by_position_visits_every_row_once_in_shard_order(demo):
    rows = _rows(demo)
    for size in (1, 2, 3, 7):
        assert _all_ids(rows, RowFilter(), size=size) == _in_shard_order(demo.records)


def test_a_page_stops_reading_once_it_is_full(demo):
    page = _rows(demo).page(RowFilter(), None, size=1)
    # Two-row batches: the first page needs the first batch only, not the version.
    assert page.scanned == 2 and len(page.rows) == 1 and page.next is not None


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (RowFilter(split="test"), lambda r: r["split"] == "test"),
        (RowFilter(source="pippa"), lambda r: r["source"] == "pippa"),
        (RowFilter(character="Aiko"), lambda r: r["character"]["name"] == "Aiko"),
        (RowFilter(modality="image"), lambda r: bool(r["images"])),
        (RowFilter(modality="audio"), lambda r: bool(r["audios"])),
        (RowFilter(modality="text"), lambda r: not r["images"] and not r["audios"]),
        (RowFilter(kind="variant"), lambda r: r["parent_id"] is not None),
        (
            RowFilter(kind="original", split="train"),
            lambda r: r["parent_id"] is None and r["split"] == "train",
        ),
        (RowFilter(q="QUESTOIN"), lambda r: any("questoin" in m["content"] for m in r["messages"])),
    ],
)
def test_each_filter_keeps_exactly_the_rows_it_names(demo, where, expected):
    wanted = _in_shard_order([r for r in demo.records if expected(r)])
    assert _all_ids(_rows(demo), where, size=3) == wanted


def test_the_quality_flag_filter_reads_the_quality_column_and_finds_nothing_without_it(demo):
    flagged = _all_ids(_rows(demo, 2), RowFilter(flag="too_short"), size=5)
    assert sorted(flagged) == sorted(r["id"] for i, r in enumerate(demo.records) if i in (4, 5))
    assert _all_ids(_rows(demo, 1), RowFilter(flag="too_short"), size=5) == []


def test_rows_carry_media_paths_not_bytes_and_media_come_from_the_shard_row(demo):
    rows = _rows(demo)
    with_image = next(r for r in demo.records if r["images"])
    shown = rows.record(with_image["id"])
    assert shown["images"] == [{"path": "boat.png"}]
    assert rows.media(with_image["id"], "images", 0) == with_image["images"][0]["bytes"]
    assert rows.media(with_image["id"], "images", 1) is None
    assert rows.media("f" * 32, "images", 0) is None


def test_a_record_keeps_its_text_as_written(demo):
    first = demo.records[0]
    assert _rows(demo).record(first["id"])["messages"][1]["content"] == SCRIPT_TURN


def test_page_tokens_round_trip_and_refuse_anything_else():
    assert PageToken.parse(str(PageToken(3, 12))) == PageToken(3, 12)
    assert str(PageToken(3, 12)) == "3.12"
    assert PageToken.parse(None) is None
    for bad in ("3", "x.1", "1.-1", "1.1.2", "1.../etc", "1." + "9" * 20):
        with pytest.raises(ValueError):
            PageToken.parse(bad)


def test_a_token_of_the_viewer_before_a_shard_and_last_id_is_refused_clearly(demo):
    old = f"0.{demo.records[3]['id']}"
    with pytest.raises(ValueError, match=r"not a page token \(<shard>\.<row>\)"):
        PageToken.parse(old)


def test_a_token_past_the_version_is_refused(demo):
    rows = _rows(demo)
    with pytest.raises(ValueError, match="past"):
        rows.page(RowFilter(), PageToken(len(rows.shards), 0))
    with pytest.raises(ValueError, match="past"):
        rows.page(RowFilter(), PageToken(0, rows.shards[0].rows + 1))
    assert rows.page(RowFilter(split="train"), PageToken(0, rows.shards[0].rows)).rows == []


def test_a_full_page_points_at_the_row_after_its_last_one_filter_or_not(demo):
    rows = _rows(demo)
    train = shard_order([r for r in demo.records if r["split"] == "train"])
    page = rows.page(RowFilter(), None, size=3)
    assert [r["id"] for r in page.rows] == [r["id"] for r in train[:3]]
    assert page.next == PageToken(0, 3)
    # With a filter the token still counts every row of the shard, kept or not.
    text = [i for i, r in enumerate(train) if not r["images"] and not r["audios"]]
    page = rows.page(RowFilter(modality="text"), None, size=2)
    assert [r["id"] for r in page.rows] == [train[i]["id"] for i in text[:2]]
    assert page.next == PageToken(0, text[1] + 1)


def test_a_filter_refuses_an_unknown_modality():
    with pytest.raises(ValueError, match="modality"):
        RowFilter.from_query({"modality": "video"})
    assert RowFilter.from_query({"split": " test ", "q": ""}).query() == {"split": "test"}


def test_a_later_page_skips_the_parquet_row_groups_before_its_position(tmp_path):
    demo = build_demo_store(str(tmp_path / "store"), fmt="parquet", models=False)
    rows = _rows(demo)
    train = [r["id"] for r in shard_order([r for r in demo.records if r["split"] == "train"])]
    page = rows.page(RowFilter(), PageToken(0, 5), size=1)
    # Two-row groups: [0, 1] and [2, 3] end before row 5 and are never decoded; [4, 5] is
    # sliced to row 5, the page's row, and [6] gives the proof that a next page exists.
    assert [r["id"] for r in page.rows] == [train[5]]
    assert page.scanned == 2 and page.next == PageToken(0, 6)


def test_an_ipc_shard_pages_from_a_position_by_counting_batch_rows(tmp_path):
    demo = build_demo_store(str(tmp_path / "store"), fmt="arrow", models=False)
    train = [r["id"] for r in shard_order([r for r in demo.records if r["split"] == "train"])]
    page = _rows(demo).page(RowFilter(), PageToken(0, 3), size=2)
    # Two-row batches: [0, 1] is skipped, [2, 3] sliced to row 3, [4, 5] ends the page.
    assert [r["id"] for r in page.rows] == train[3:5]
    assert page.scanned == 3 and page.next == PageToken(0, 5)


def test_a_record_and_its_media_in_the_middle_of_an_unsorted_multi_group_shard(demo):
    rows = _rows(demo)
    train = shard_order([r for r in demo.records if r["split"] == "train"])
    for record in train:  # rows 0-6 of four two-row groups (batches), ids in no order
        assert rows.record(record["id"])["id"] == record["id"]
    middle = train[3]
    assert rows.record(middle["id"])["messages"] == middle["messages"]
    for i, record in enumerate(train):
        for column in ("images", "audios"):
            for n, item in enumerate(record[column]):
                assert rows.media(record["id"], column, n) == item["bytes"], (i, column)


def test_a_record_is_found_by_the_sidecar_which_must_agree_with_the_shard(tmp_path):
    import pyarrow.parquet as pq

    from pipeline.store.row_digest import digest_table

    demo = build_demo_store(str(tmp_path / "store"), fmt="parquet", models=False)
    rows = _rows(demo)
    shard = rows.shards[0]
    sidecar = os.path.join(demo.store.version_dir(1), shard.row_digests)
    table = pq.read_table(sidecar)
    ids = table["id"].to_pylist()
    # Rows 2 and 5 swapped in the sidecar: the viewer reads the row it names and says so.
    ids[2], ids[5] = ids[5], ids[2]
    pq.write_table(digest_table(ids, table["row_sha256"].to_pylist()), sidecar)
    with pytest.raises(ShardRowsMismatch, match=f"row 2 of {shard.path}"):
        _rows(demo).record(ids[2])


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_a_version_without_sidecars_finds_records_and_media_by_a_scan(tmp_path, fmt):
    from pipeline.store.read import Store
    from tests.pipeline.view.conftest import NAME, demo_records, write_version

    store = Store(str(tmp_path / "store"), NAME)
    records = demo_records()
    manifest = write_version(store, 1, records, fmt, sidecars=False)
    assert all(s.row_digests is None for s in manifest.shards)
    rows = VersionRows(store, store.manifest(1))
    for record in records:
        assert rows.record(record["id"])["id"] == record["id"]
    image = next(r for r in records if r["images"])
    assert rows.media(image["id"], "images", 0) == image["images"][0]["bytes"]
    assert rows.record("f" * 32) is None
    train = sorted(r["id"] for r in records if r["split"] == "train")
    assert _all_ids(rows, RowFilter(split="train"), size=2) == train
