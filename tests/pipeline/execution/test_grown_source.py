"""A JSON lines source that only grew is read from its old end (its ingest memo stands
for the rest); one edited in the middle, or whose media changed, is read whole. Either
way the version is the one a run from scratch makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import pipeline.readers.sources as readers
from pipeline.execution.job import DataJob, RunResult
from pipeline.readers.files import LinesFrom
from tests.fixtures.corpus import write_bytes
from tests.fixtures.media import image_bytes
from tests.pipeline.execution.datajob_corpus import _record, make_recipe, write_corpus


def _run(corpus: Path, store: str, **overrides: Any) -> RunResult:
    return DataJob(make_recipe(corpus, store=store, cards_dir=f"{store}-cards", **overrides)).run()


def _from_scratch(corpus: Path) -> RunResult:
    return _run(corpus, "scratch", execution={"batch_size": 4, "cache": False})


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[LinesFrom | None]:
    """Record how the dialogues file is read to its end: None for a read from its start,
    else its LinesFrom. (The recipe check's look at its first record is no read.)"""
    seen: list[LinesFrom | None] = []
    real_lines, real_whole = readers.json_lines_from, readers.iter_raw_items

    def lines(path: str, at: LinesFrom, fs: Any) -> Any:
        seen.append(at)
        return real_lines(path, at, fs)

    def whole(path: str, fs: Any) -> Any:
        yield from real_whole(path, fs)
        if path.endswith("dialogues.jsonl"):
            seen.append(None)

    monkeypatch.setattr(readers, "json_lines_from", lines)
    monkeypatch.setattr(readers, "iter_raw_items", whole)
    return seen


def _append(folder: Path, numbers: range) -> int:
    """Append records `numbers` (text and images) to the dialogues; return the old size."""
    dialogues = folder / "dialogues.jsonl"
    size = dialogues.stat().st_size
    with dialogues.open("a", encoding="utf-8") as f:
        for i in numbers:
            record = _record(i)
            record["audios"], record["messages"][0]["content"] = [], f"<image> Question {i}?"
            record["images"] = [f"images/{i}.png"]
            write_bytes(folder / f"images/{i}.png", image_bytes("PNG", 8, (i * 37) % 256))
            f.write(json.dumps(record) + "\n")
    return size


def test_a_grown_jsonl_is_read_from_its_old_end_and_equals_a_run_from_scratch(
    tmp_path: Path, reads: list[LinesFrom | None]
) -> None:
    write_corpus(tmp_path)
    before = _run(tmp_path, "store")
    old_size = _append(tmp_path, range(40, 43))
    reads.clear()
    after = _run(tmp_path, "store")
    # The whole-file parse for the media pins and the records' read both start at the old end.
    grown = [r for r in reads if r is not None and r.only is None]
    assert None not in reads and grown and {r.offset for r in grown} == {old_size}
    # Records that moved split are read back alone, by their lines, and nothing else.
    again = [r.only for r in reads if r is not None and r.only is not None]
    assert after.reuse is not None
    moved = after.reuse.computed - 3
    assert sum(len(lines) for lines in again) == moved
    scratch = _from_scratch(tmp_path)
    assert after.content_id == scratch.content_id != before.content_id
    assert after.counts == scratch.counts and after.unmapped_fields == scratch.unmapped_fields
    assert Path(after.quarantine_path).read_text() == Path(scratch.quarantine_path).read_text()


@pytest.mark.parametrize("change", ["a line in the middle", "a media file of an old line"])
def test_a_jsonl_changed_before_its_old_end_is_read_whole(
    tmp_path: Path, reads: list[LinesFrom | None], change: str
) -> None:
    dialogues = write_corpus(tmp_path)
    _run(tmp_path, "store")
    if change == "a line in the middle":
        text = dialogues.read_text(encoding="utf-8")
        dialogues.write_text(text.replace("Question 7:", "Question seven:"), encoding="utf-8")
    else:
        (tmp_path / "images/3.png").write_bytes(image_bytes("PNG", 8, 201))
    _append(tmp_path, range(40, 42))
    reads.clear()
    after = _run(tmp_path, "store")
    assert reads and all(r is None or r.offset == 0 for r in reads)
    assert after.content_id == _from_scratch(tmp_path).content_id
