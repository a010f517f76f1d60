"""Text files in any Unicode encoding users save, keys written twice, media paths that cannot
name a file, and JSON arrays too large to load: each costs at most its own record."""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.readers import files, read_source, referenced_media
from pipeline.readers.files import iter_raw_items
from pipeline.recipe import Recipe, load_recipe
from pipeline.record.rejection import QuarantineEntry
from tests.fixtures.corpus import write_recipe

TURNS = [{"role": "user", "content": "Hi ☕"}, {"role": "assistant", "content": "Hello 你好"}]
RECORDS = [{"messages": TURNS, "character": f"C{i}"} for i in range(3)]


def _recipe(folder: Path, **source: Any) -> Recipe:
    return load_recipe(write_recipe(folder, [{"name": "src", **source}]), check_ops=False)


def _read(recipe: Recipe) -> tuple[list[dict[str, Any]], list[QuarantineEntry]]:
    good, bad = [], []
    for item in read_source(recipe.sources[0], recipe):
        (bad if isinstance(item, QuarantineEntry) else good).append(item)
    return good, bad


def _jsonl(records: list[Any]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# --- encodings (issue 27 item 4) ------------------------------------------------------------


@pytest.mark.parametrize("name", ["d.jsonl", "d.json"])
def test_a_utf8_bom_costs_no_record(tmp_path: Path, name: str) -> None:
    text = _jsonl(RECORDS) if name.endswith("l") else json.dumps(RECORDS)
    (tmp_path / name).write_bytes(codecs.BOM_UTF8 + text.encode())
    good, bad = _read(_recipe(tmp_path, path=name))
    assert (len(good), bad) == (3, [])
    assert good[0]["source_ref"].endswith(f"{name}:{1 if name.endswith('l') else 0}")


def test_a_bom_on_a_characters_file_and_a_persona_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(_jsonl([{"messages": TURNS, "character": "Mira"}]))
    entry = {"name": "Mira", "aliases": ["Cap"]}
    (tmp_path / "chars.jsonl").write_bytes(codecs.BOM_UTF8 + _jsonl([entry]).encode())
    (tmp_path / "persona.txt").write_bytes(codecs.BOM_UTF8 + b"Captain of the Kestrel.")
    good, bad = _read(
        _recipe(tmp_path, path="d.jsonl", characters="chars.jsonl", persona="persona.txt")
    )
    assert bad == []
    assert good[0]["character"]["profile"] == "Captain of the Kestrel."
    assert good[0]["character"]["aliases"] == ["Cap"]


@pytest.mark.parametrize(
    ("codec", "bom"),
    [
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-16-le", b""),  # Notepad's "Unicode" without a BOM is recognised by its NULs
        ("utf-32-le", codecs.BOM_UTF32_LE),
        ("utf-32-be", b""),
    ],
)
@pytest.mark.parametrize("name", ["d.jsonl", "d.json"])
def test_utf16_and_utf32_files_are_decoded(
    tmp_path: Path, codec: str, bom: bytes, name: str
) -> None:
    text = _jsonl(RECORDS) if name.endswith("l") else json.dumps(RECORDS, indent=2)
    (tmp_path / name).write_bytes(bom + text.encode(codec))
    good, bad = _read(_recipe(tmp_path, path=name))
    assert bad == []
    assert [m["content"] for r in good for m in r["messages"]] == ["Hi ☕", "Hello 你好"] * 3


def test_a_utf16_file_that_does_not_decode_is_refused_in_one_entry_naming_it(
    tmp_path: Path,
) -> None:
    # A lone high surrogate followed by a letter cannot be UTF-16.
    data = codecs.BOM_UTF16_LE + _jsonl(RECORDS).encode("utf-16-le") + b"\x00\xd8A\x00"
    (tmp_path / "d.jsonl").write_bytes(data)
    good, bad = _read(_recipe(tmp_path, path="d.jsonl"))
    assert good == [] and len(bad) == 1
    assert bad[0].reason == "invalid_utf8" and "UTF-16-LE" in bad[0].message


def test_a_utf8_line_that_starts_with_ff_fe_is_a_broken_line_not_a_utf16_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "d.jsonl").write_bytes(b'\xff\xfe{"messages": []}\n' + _jsonl(RECORDS).encode())
    good, bad = _read(_recipe(tmp_path, path="d.jsonl"))
    assert len(good) == 3 and [e.source_ref for e in bad] == ["d.jsonl:1"]


# --- duplicate keys (issue 27 item 6): rejected, never silently the last value -------------


def test_a_key_written_twice_quarantines_that_record_and_keeps_its_neighbours(
    tmp_path: Path,
) -> None:
    twice = '{"messages": [], "messages": ' + json.dumps(TURNS) + "}"
    inner = '{"messages": [{"role": "user", "role": "assistant", "content": "x"}]}'
    lines = [json.dumps(RECORDS[0]), twice, inner, json.dumps(RECORDS[1])]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "a.json").write_text("[" + ",".join(lines) + "]")
    for name in ("d.jsonl", "a.json"):
        good, bad = _read(_recipe(tmp_path, path=name))
        assert len(good) == 2, name
        assert [e.reason for e in bad] == ["duplicate_key", "duplicate_key"], name
        assert "'messages' appears twice" in bad[0].message


# --- media paths that cannot name a file (issue 27 item 1) --------------------------------


def test_a_nul_byte_in_a_media_path_quarantines_the_record_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    bad_record = {
        "messages": [{"role": "user", "content": "<image>"}, TURNS[1]],
        "images": ["a\x00.png"],
    }
    (tmp_path / "d.jsonl").write_text(_jsonl([bad_record, RECORDS[0]]))
    recipe = _recipe(tmp_path, path="d.jsonl")
    assert referenced_media(recipe.sources[0], recipe) == []  # used to raise ValueError
    good, bad = _read(recipe)
    assert len(good) == 1
    assert [(e.reason, e.source_ref) for e in bad] == [("missing_media", "d.jsonl:1")]
    assert "null byte" in bad[0].message


# --- JSON arrays are streamed (issue 22 item 5) --------------------------------------------


def _items(path: Path) -> list[tuple[str, Any, str | None]]:
    return [
        (i.key, i.value, i.error.reason if i.error else None) for i in iter_raw_items(str(path))
    ]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_an_array_read_in_chunks_of_any_size_gives_the_same_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Strings holding brackets, commas, quotes and escapes must not end an element early.
    tricky = {"messages": [{"role": "user", "content": 'a "quoted" ], {x}, \\ back\\slash \u2603'}]}
    values = [RECORDS[0], tricky, RECORDS[1], {"n": [1, [2, {"d": ","}]]}]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(values, indent=1, ensure_ascii=False))
    monkeypatch.setattr(files, "ARRAY_CHUNK_CHARS", chunk)
    assert _items(path) == [(str(i), v, None) for i, v in enumerate(values)]


@pytest.mark.parametrize("chunk", [5, 1 << 20])
def test_a_broken_element_of_a_streamed_array_keeps_its_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    good = json.dumps(RECORDS[0])
    deep = '{"x": ' + "[" * 5000 + "]" * 5000 + "}"
    text = f'[{good},\n{{"messages": [oops]}},\n{good}, {deep}, 42, {good}, {good[:25]}'
    (tmp_path / "a.json").write_text(text)
    monkeypatch.setattr(files, "ARRAY_CHUNK_CHARS", chunk)
    reasons = [reason for _, _, reason in _items(tmp_path / "a.json")]
    assert reasons == [
        None,
        "invalid_json",
        None,
        "nesting_too_deep",
        "wrong_types",
        None,
        "invalid_json",
    ]


def test_a_large_array_is_read_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader never asks the file for more than a chunk at once (the format sniffer
    # reads at most SNIFF_BYTES), so memory holds a chunk and an element, whatever the size.
    path = tmp_path / "big.json"
    path.write_text(json.dumps([RECORDS[0]] * 2000))
    monkeypatch.setattr(files, "ARRAY_CHUNK_CHARS", 4096)
    sizes: list[int] = []
    real_open = files.LOCAL.open
    monkeypatch.setattr(files.LOCAL, "open", lambda location: _Spy(real_open(location), sizes))
    assert sum(1 for _ in iter_raw_items(str(path))) == 2000
    assert -1 not in sizes and max(sizes) <= files.SNIFF_BYTES
    assert sizes.count(4096) > 10


class _Spy:
    """A file that records how much each read asks for."""

    def __init__(self, f: Any, sizes: list[int]) -> None:
        self._f, self._sizes = f, sizes

    def __enter__(self) -> _Spy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def read(self, n: int = -1) -> bytes:
        self._sizes.append(n)
        return self._f.read(n)

    def readline(self, n: int = -1) -> bytes:
        self._sizes.append(n)
        return self._f.readline(n)
