"""One JSON lines file read by several ingest tasks, a byte range each, makes the version,
quarantine and source_refs a read by one task makes (`pipeline.execution.ingest_ranges`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import pipeline.execution.ingest_ranges as ingest_ranges
import pipeline.readers.sources as readers
from pipeline.execution.cluster import TaskRunner
from pipeline.execution.ingest_ranges import plan_ranges
from pipeline.execution.job import DataJob, RunResult
from pipeline.readers.files import LinesFrom, iter_raw_items, json_lines_from
from pipeline.readers.source_fs import LOCAL
from tests.pipeline.execution.datajob_corpus import make_recipe, published_rows, write_corpus

BAD_LINE = "{this line is not JSON"


def _run(corpus: Path, store: str, **overrides: Any) -> RunResult:
    recipe = make_recipe(
        corpus, store=store, cards_dir=f"{store}-cards", max_bad_fraction=0.2, **overrides
    )
    return DataJob(recipe).run()


@pytest.fixture
def ranges(monkeypatch: pytest.MonkeyPatch) -> list[LinesFrom]:
    """Have the job cut the tiny corpus's file into ranges (as on 2 CPUs, with ranges of a
    few hundred bytes); return the LinesFrom of every range read."""
    seen: list[LinesFrom] = []
    real = readers.json_lines_from

    def lines(path: str, at: LinesFrom, fs: Any) -> Any:
        if at.end is not None:
            seen.append(at)
        return real(path, at, fs)

    monkeypatch.setattr(readers, "json_lines_from", lines)
    monkeypatch.setattr(TaskRunner, "cpus", lambda self: 2)
    monkeypatch.setattr(ingest_ranges, "MIN_RANGE_BYTES", 256)
    monkeypatch.setattr(ingest_ranges, "SPLIT_FROM_BYTES", 512)
    return seen


def _corpus_with_a_late_bad_line(folder: Path) -> int:
    """Write the tiny corpus with a line that is not JSON near its end (and one in the
    characters file, whose entry comes first); return its line."""
    dialogues = write_corpus(folder)
    with (folder / "characters.jsonl").open("a", encoding="utf-8") as f:
        f.write(BAD_LINE + "\n")
    lines = dialogues.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(len(lines) - 3, BAD_LINE + "\n")
    dialogues.write_text("".join(lines), encoding="utf-8")
    return len(lines) - 3


def _whole(folder: Path, cache: bool) -> RunResult:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TaskRunner, "cpus", lambda self: 1)
        return _run(folder, "whole", execution={"batch_size": 4, "cache": cache})


def _rows(result: RunResult) -> list[dict[str, Any]]:
    """Return the version's rows by id, media left out (`references` holds the source_ref)."""
    return sorted(published_rows(result), key=lambda r: r["id"])


@pytest.mark.parametrize("cache", [True, False], ids=["keeping its memo", "without a cache"])
def test_a_jsonl_read_in_ranges_makes_the_version_one_task_makes(
    tmp_path: Path, ranges: list[LinesFrom], cache: bool
) -> None:
    _corpus_with_a_late_bad_line(tmp_path)
    split = _run(tmp_path, "split", execution={"batch_size": 4, "cache": cache})
    assert len({r.offset for r in ranges}) >= 3
    ranges.clear()
    whole = _whole(tmp_path, cache)
    assert not ranges
    assert split.content_id == whole.content_id
    assert split.counts == whole.counts and split.unmapped_fields == whole.unmapped_fields
    assert Path(split.quarantine_path).read_text() == Path(whole.quarantine_path).read_text()
    assert _rows(split) == _rows(whole)


def test_a_bad_line_in_a_later_range_is_quarantined_with_its_line_number(
    tmp_path: Path, ranges: list[LinesFrom]
) -> None:
    line = _corpus_with_a_late_bad_line(tmp_path)
    result = _run(tmp_path, "split")
    its_range = [r for r in ranges if r.line < line and r.offset > 0]
    assert its_range, "the bad line lies in a range after the first"
    entries = [json.loads(e) for e in Path(result.quarantine_path).read_text().splitlines()]
    bad = [e for e in entries if e["reason"] == "invalid_json" and "dialogues" in e["source_ref"]]
    assert [e["source_ref"] for e in bad] == [f"dialogues.jsonl:{line}"]


def test_cuts_inside_a_multibyte_character_or_a_crlf_move_to_the_next_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.jsonl"
    rows = [{"text": "é" * (7 + i % 5) + "\u4e16" * (i % 3)} for i in range(200)]
    data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\r\n" for r in rows)
    path.write_bytes(data)
    whole = [(i.key, i.value) for i in iter_raw_items(str(path), LOCAL)]
    cut_inside = set()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_ranges, "MIN_RANGE_BYTES", 16)
        patch.setattr(ingest_ranges, "SPLIT_FROM_BYTES", 32)
        for pieces in range(2, 40):
            plan = plan_ranges(str(path), "auto", pieces, None, None, LOCAL, None)
            assert plan is not None and len(plan.ranges) == pieces
            for k in range(1, pieces):
                target = len(data) * k // pieces
                if data[target] & 0xC0 == 0x80:
                    cut_inside.add("a character")
                if data[target] == 0x0A:
                    cut_inside.add("a CRLF")
            assert all(data[r.offset - 1] == 0x0A for r in plan.ranges[1:])
            read = [(i.key, i.value) for r in plan.ranges for i in json_lines_from(str(path), r)]
            assert read == whole
    assert cut_inside == {"a character", "a CRLF"}


def _grow(dialogues: Path) -> int:
    """Append a dozen text records to the dialogues; return the old size."""
    size = dialogues.stat().st_size
    with dialogues.open("a", encoding="utf-8") as f:
        for i in range(40, 52):
            turns = [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": f"Answer {i}."},
            ]
            f.write(json.dumps({"messages": turns, "character": "Vela"}) + "\n")
    return size


def test_a_grown_jsonl_read_in_ranges_reads_only_its_tail_and_equals_a_run_from_scratch(
    tmp_path: Path, ranges: list[LinesFrom]
) -> None:
    dialogues = write_corpus(tmp_path)
    _run(tmp_path, "store")
    old_size = _grow(dialogues)
    ranges.clear()
    after = _run(tmp_path, "store")
    assert len({r.offset for r in ranges}) >= 2 and min(r.offset for r in ranges) == old_size
    scratch = _run(tmp_path, "scratch", execution={"batch_size": 4, "cache": False})
    assert after.content_id == scratch.content_id
    assert after.counts == scratch.counts and after.unmapped_fields == scratch.unmapped_fields
    assert Path(after.quarantine_path).read_text() == Path(scratch.quarantine_path).read_text()


def test_a_jsonl_in_a_bucket_is_read_in_ranges_as_one_task_reads_it(
    tmp_path: Path, s3_store: str, ranges: list[LinesFrom]
) -> None:
    from tests.fixtures.object_store import upload_folder

    _corpus_with_a_late_bad_line(tmp_path / "corpus")
    uri = upload_folder(tmp_path / "corpus", f"s3://{s3_store.split('/')[2]}/corpora/tiny")
    sources = [
        {"name": "tiny", "path": f"{uri}/dialogues.jsonl", "characters": f"{uri}/characters.jsonl"}
    ]
    split = _run(tmp_path, "split", sources=sources)
    assert len({r.offset for r in ranges}) >= 3  # each range read by its own GETs
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TaskRunner, "cpus", lambda self: 1)
        ranges.clear()
        whole = _run(tmp_path, "whole", sources=sources)
        assert not ranges
    assert split.content_id == whole.content_id and split.counts == whole.counts
    assert Path(split.quarantine_path).read_text() == Path(whole.quarantine_path).read_text()


@pytest.mark.parametrize("kind", ["UTF-16 text", "one JSON array", "a SillyTavern chat"])
def test_a_file_that_cannot_be_cut_at_its_newlines_is_read_by_one_task(
    tmp_path: Path, kind: str
) -> None:
    rows = [{"messages": [{"role": "user", "content": f"line {i}"}]} for i in range(400)]
    path = tmp_path / "d.jsonl"
    fmt = "auto"
    if kind == "UTF-16 text":
        path.write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode("utf-16"))
    elif kind == "one JSON array":
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        fmt = "sillytavern"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_ranges, "MIN_RANGE_BYTES", 16)
        patch.setattr(ingest_ranges, "SPLIT_FROM_BYTES", 32)
        assert plan_ranges(str(path), fmt, 4, None, None, LOCAL, None) is None
        # The same lines as UTF-8 JSON lines are cut.
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert plan_ranges(str(path), "auto", 4, None, None, LOCAL, None) is not None


def test_the_memo_a_ranged_read_keeps_serves_a_later_read_by_one_task(
    tmp_path: Path, ranges: list[LinesFrom], monkeypatch: pytest.MonkeyPatch
) -> None:
    dialogues = write_corpus(tmp_path)
    _run(tmp_path, "store")
    assert ranges
    old_size = _grow(dialogues)
    monkeypatch.setattr(TaskRunner, "cpus", lambda self: 1)
    ranges.clear()
    seen: list[LinesFrom] = []
    real = readers.json_lines_from
    monkeypatch.setattr(
        readers, "json_lines_from", lambda p, at, fs: seen.append(at) or real(p, at, fs)
    )
    after = _run(tmp_path, "store")
    assert not ranges and {r.offset for r in seen if r.only is None} == {old_size}
    scratch = _run(tmp_path, "scratch", execution={"batch_size": 4, "cache": False})
    assert after.content_id == scratch.content_id
    assert Path(after.quarantine_path).read_text() == Path(scratch.quarantine_path).read_text()
