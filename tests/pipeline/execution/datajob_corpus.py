"""A tiny multimodal corpus and recipe for the data-job tests (8x8 images, 0.1 s clips)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.recipe import Recipe, parse_recipe
from pipeline.record.schema import WORK_SCHEMA, records_to_table
from tests.fixtures.corpus import write_bytes, write_jsonl
from tests.fixtures.media import audio_bytes, image_bytes

CHARACTERS = ["Vela", "Hootsworth", "Marlowe", "Pip"]
ORIGINALS = 24
DUPLICATED = (0, 5)  # these records appear twice, byte for byte
# Cheap ops only: our own dialogue and audio ops import no torch in the Ray workers.
AUGMENT = {
    "copies": 2,
    "dialogue": [{"op": "ContextWindow", "p": 1.0}],
    "audio": [{"op": "SpeedPerturb", "factors": [0.9, 1.1]}],
}


def _record(i: int) -> dict[str, Any]:
    user = f"Question {i}: what do you think of this?"
    images, audios = [], []
    if i % 3 == 0:
        user = "<image> " + user
        images.append(f"images/{i}.png")
    if i % 4 == 1:
        user += " Listen: <audio>"
        audios.append(f"audio/{i}.wav")
    return {
        "character": CHARACTERS[i % len(CHARACTERS)],
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": f"Answer number {i}, in character."},
            {"role": "user", "content": "Tell me more."},
            {"role": "assistant", "content": f"More about {i}: the wind turns."},
        ],
        "images": images,
        "audios": audios,
    }


def write_corpus(folder: Path, extra: int = 0) -> Path:
    """Write characters, dialogues (+`extra` new ones), two duplicates, one record the
    reader rejects (missing media) and one validation rejects (corrupt image); return the
    dialogues file."""
    write_jsonl(
        folder / "characters.jsonl",
        [
            {"name": n, "profile": f"{n} is a test persona.", "greeting": "Hi!", "catchphrases": []}
            for n in CHARACTERS
        ],
    )
    records = [_record(i) for i in range(ORIGINALS + extra)]
    for i in range(ORIGINALS + extra):
        if i % 3 == 0:
            write_bytes(folder / f"images/{i}.png", image_bytes("PNG", 8, (i * 37) % 256))
        if i % 4 == 1:
            write_bytes(folder / f"audio/{i}.wav", audio_bytes("WAV", 0.1, 8000 + 100 * i))
    broken = _record(999)  # the reader rejects it: its image file does not exist
    corrupt = _record(998)  # readers load its bytes; validation finds they do not decode
    write_bytes(folder / "images/corrupt.png", b"\x89PNG not really")
    corrupt["images"] = ["images/corrupt.png"]
    corrupt["messages"][0]["content"] = "<image> what is this?"
    lines = [*records, *(records[i] for i in DUPLICATED), broken, corrupt]
    return write_jsonl(folder / "dialogues.jsonl", lines)


def recipe_dict(**overrides: Any) -> dict[str, Any]:
    """Return the test recipe over the tiny corpus as YAML data (store and cards inside its
    folder); `overrides` replace top-level keys."""
    data: dict[str, Any] = {
        "name": "tiny",
        "store": "store",
        "cards_dir": "cards",
        "seed": 7,
        "sources": [{"name": "tiny", "path": "dialogues.jsonl", "characters": "characters.jsonl"}],
        "split": {"by": "conversation", "validation": 0.2, "test": 0.2},
        "augment": AUGMENT,
        "execution": {"batch_size": 4},
        "max_bad_fraction": 0.1,
    }
    data.update(overrides)
    return data


def make_recipe(folder: Path, **overrides: Any) -> Recipe:
    """Return the test recipe over the corpus in `folder` (store and cards inside it)."""
    return parse_recipe(recipe_dict(**overrides), base_dir=str(folder))


def work_record(i: int, **fields: Any) -> dict[str, Any]:
    """Return a WORK record dict built directly (no reader), for stage and writer tests."""
    record = {
        "id": f"id-{i:04d}",
        "parent_id": None,
        "source": "s",
        "split": None,
        "character": {
            "name": CHARACTERS[i % 4],
            "profile": "p",
            "greeting": "g",
            "catchphrases": [],
        },
        "messages": [
            {"role": "user", "content": f"<image> hello {i}"},
            {"role": "assistant", "name": None, "content": f"answer {i}"},
        ],
        "images": [{"bytes": image_bytes("PNG", 8, i % 256), "path": f"images/{i}.png"}],
        "audios": [],
        "augmentation": None,
        "source_ref": f"d.jsonl:{i + 1}",
    }
    record.update(fields)
    return record


def work_table(records: list[dict[str, Any]]):
    """Return WORK records as an Arrow table."""
    return records_to_table(records, WORK_SCHEMA)


def stage_records(folder: Path, records: list[dict[str, Any]], rows_per_part: int):
    """Write `records` into staged part files; return (PartSet, writer index)."""
    import pyarrow as pa

    from pipeline.store.staging import PartSet, PartWriter
    from pipeline.store.writer import table_index

    index = []
    with PartWriter(str(folder), WORK_SCHEMA, 1 << 30, max_rows=rows_per_part) as writer:
        for start in range(0, len(records), rows_per_part):
            table = work_table(records[start : start + rows_per_part])
            where = writer.write(table)
            index.append(table_index(table, where))
    return PartSet(writer.paths), pa.concat_tables(index)


def published_rows(result: Any) -> list[dict[str, Any]]:
    """Return every row of the version a RunResult names, without its media columns."""
    from pipeline.store.read import Store
    from pipeline.store.shards import read_shard_batches

    manifest = Store(str(Path(result.path).parents[2]), result.name).manifest(result.version)
    rows = []
    for shard in manifest.shards:
        for batch in read_shard_batches(os.path.join(result.path, shard.path)):
            rows += pa.Table.from_batches([batch]).drop_columns(["images", "audios"]).to_pylist()
    return rows


def run_job(folder: Path, store: str, **overrides: Any) -> Any:
    """Run the data job of the test recipe over `folder` into store `store` (cards beside)."""
    from pipeline.execution.job import DataJob

    recipe = make_recipe(folder, store=store, cards_dir=f"{store}-cards", **overrides)
    return DataJob(recipe).run()
