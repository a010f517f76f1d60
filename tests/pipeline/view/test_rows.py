"""Reading a version's rows on demand: filtered pages, keyset paging, records and media."""

from __future__ import annotations

import pytest

from pipeline.view.rows import PageToken, RowFilter, VersionRows
from tests.pipeline.view.conftest import SCRIPT_TURN, build_demo_store


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


def test_paging_by_key_visits_every_row_once_in_shard_and_id_order(demo):
    rows = _rows(demo)
    ids = _all_ids(rows, RowFilter(), size=2)
    train = sorted(r["id"] for r in demo.records if r["split"] == "train")
    test = sorted(r["id"] for r in demo.records if r["split"] == "test")
    assert ids == train + test


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
    wanted = sorted(
        (r for r in demo.records if expected(r)), key=lambda r: (r["split"] != "train", r["id"])
    )
    assert _all_ids(_rows(demo), where, size=3) == [r["id"] for r in wanted]


def test_the_quality_flag_filter_reads_the_quality_column_and_finds_nothing_without_it(demo):
    flagged = _all_ids(_rows(demo, 2), RowFilter(flag="too_short"), size=5)
    assert flagged == sorted(r["id"] for i, r in enumerate(demo.records) if i in (4, 5))
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
    assert PageToken.parse(str(PageToken(3, "ab12"))) == PageToken(3, "ab12")
    assert PageToken.parse(None) is None
    for bad in ("3", "x.ab", "1.a/b", "1.../etc", "1." + "a" * 200):
        with pytest.raises(ValueError):
            PageToken.parse(bad)


def test_a_filter_refuses_an_unknown_modality():
    with pytest.raises(ValueError, match="modality"):
        RowFilter.from_query({"modality": "video"})
    assert RowFilter.from_query({"split": " test ", "q": ""}).query() == {"split": "test"}


def test_a_later_page_skips_the_parquet_row_groups_before_its_key(tmp_path):
    demo = build_demo_store(str(tmp_path / "store"), fmt="parquet", models=False)
    rows = _rows(demo)
    train = sorted(r["id"] for r in demo.records if r["split"] == "train")
    page = rows.page(RowFilter(), PageToken(0, train[4]), size=1)
    # Two-row groups: [0, 1] and [2, 3] end at or before the key and are never decoded;
    # [4, 5] gives the row and [6] the proof that a next page exists.
    assert [r["id"] for r in page.rows] == [train[5]]
    assert page.scanned == 3 and page.next == PageToken(0, train[5])
