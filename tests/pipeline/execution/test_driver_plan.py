"""The driver's plans are vectorised over the ingest keys and give what the per-record
rules give (docs/ARCHITECTURE.md, "The data flow": the driver decides from small facts)."""

from __future__ import annotations

import pyarrow as pa

from pipeline.execution.cluster import MAX_TASKS_PER_CPU, slice_rows
from pipeline.execution.passes import ROWS_SCHEMA
from pipeline.execution.plan import exact_duplicates, regrouped, writer_index
from pipeline.recipe import SplitConfig
from pipeline.stages.split import SplitStage


def _splitter() -> SplitStage:
    return SplitStage(SplitConfig(by="conversation", validation=0.2, test=0.1), seed=7)


def test_a_plan_from_the_ingest_tasks_points_equals_the_plan_from_the_group_keys() -> None:
    splitter = _splitter()
    keys = [f"conversation:r{i}" for i in range(50)] * 2  # repeats count once
    by_keys = splitter.planned(keys)
    by_points = splitter.planned_at(splitter.points(keys))
    assert by_points.plan == by_keys.plan
    assert by_points.splits_at(splitter.points(keys)).to_pylist() == [
        by_keys.split_of(k) for k in keys
    ]
    assert set(by_points.splits_at(splitter.points(keys)).to_pylist()) == {
        "train",
        "validation",
        "test",
    }


def test_exact_duplicates_keep_the_smallest_id_of_each_key_in_input_order() -> None:
    keys = pa.table(
        {
            "id": ["d", "b", "a", "c", "e"],
            "key": ["k2", "k1", "k1", "k2", "k3"],
            "source": ["s"] * 5,
            "source_ref": ["f:1", "f:2", "f:3", "f:4", "f:5"],
        }
    )
    todo, duplicates = exact_duplicates(keys)
    assert todo["id"].to_pylist() == ["a", "c", "e"]
    assert duplicates.to_pylist() == [
        {"id": "b", "representative": "a", "source": "s", "source_ref": "f:2"},
        {"id": "d", "representative": "c", "source": "s", "source_ref": "f:1"},
    ]


def test_merged_groups_take_the_point_of_the_group_they_join() -> None:
    splitter = _splitter()
    groups = ["conversation:a", "conversation:b", "conversation:c"]
    todo = pa.table({"group": groups, "point": splitter.points(groups)})
    out = regrouped(
        todo, {"conversation:b": "near_dup:x", "conversation:c": "near_dup:x"}, splitter
    )
    assert out["group"].to_pylist() == ["conversation:a", "near_dup:x", "near_dup:x"]
    assert (
        out["point"].to_pylist()
        == splitter.points(["conversation:a", "near_dup:x", "near_dup:x"]).to_pylist()
    )


def test_a_big_pass_takes_bigger_tasks_not_more_of_them() -> None:
    assert slice_rows(400, cpus=2, max_rows=16) == 16  # small passes: unchanged
    per_task = slice_rows(100_000, cpus=2, max_rows=16)
    assert -(-100_000 // per_task) <= 2 * MAX_TASKS_PER_CPU


def test_the_writer_numbers_parts_by_their_smallest_record_id_not_their_names() -> None:
    # Part names are hashes that move with the code version; the ids in them do not.
    rows = pa.Table.from_pylist(
        [
            {"split": "train", "id": "m", "part": "a.arrow", "row": 0, "nbytes": 1},
            {"split": "train", "id": "b", "part": "z.arrow", "row": 0, "nbytes": 1},
            {"split": "train", "id": "k", "part": "a.arrow", "row": 1, "nbytes": 1},
            {"split": "test", "id": "x", "part": "c.arrow", "row": 0, "nbytes": 1},
        ],
        schema=ROWS_SCHEMA,
    )
    index, paths = writer_index(rows)
    assert paths == ["z.arrow", "a.arrow", "c.arrow"]  # smallest ids b, k, x
    assert index["part"].to_pylist() == [1, 0, 1, 2]
    renamed = rows.set_column(3, "part", pa.array(["q.arrow", "p.arrow", "q.arrow", "o.arrow"]))
    assert writer_index(renamed)[0].equals(index)
