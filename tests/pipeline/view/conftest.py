"""A small committed store for the viewer's tests, written directly (no Ray): shards in the
published layout, a manifest, a quarantine file, and a registry with a promoted model.

v1 has no `quality` column (as versions published before the quality stages); v2 has one.
Corpus text is hostile on purpose: a turn holds a script, the quarantine an onerror image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.record.ids import original_id, variant_id
from pipeline.record.schema import RECORD_SCHEMA, records_to_table
from pipeline.store.fs import LocalFS
from pipeline.store.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_FORMAT_V1,
    AugmentationSummary,
    CodeVersion,
    DedupSummary,
    Manifest,
    QuarantineSummary,
    ShardEntry,
    content_id,
    schema_sha256,
)
from pipeline.store.read import Store
from pipeline.store.row_digest import ROWS_FOLDER, add_row_digests

NAME = "demo"
SCRIPT_TURN = "<script>alert('owned')</script> hi <b>there</b>"
HOSTILE_EXCERPT = "<img src=x onerror=alert(1)>"
# Versions published before the quality stages have no `quality` column: v1 is one.
BEFORE_QUALITY_SCHEMA = pa.schema(
    [f for f in RECORD_SCHEMA if f.name != "quality"], metadata=RECORD_SCHEMA.metadata
)


def png_bytes(color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(seconds: float = 0.25, rate: int = 8000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


AIKO = {
    "name": "Aiko",
    "profile": "A shy librarian <who> writes poems.",
    "greeting": "Welcome!",
    "catchphrases": ["Quiet, please."],
    "aliases": ["Ai"],
}
BRAM = {
    "name": "Bram",
    "profile": "A gruff ferryman.",
    "greeting": None,
    "catchphrases": [],
    "aliases": [],
}


def _turns(user: str, reply: str, narration: str | None = None) -> list[dict]:
    turns = [{"role": "user", "name": None, "content": narration}] if narration else []
    return turns + [
        {"role": "user", "name": "Kai", "content": user},
        {"role": "assistant", "name": None, "content": reply},
    ]


def demo_records() -> list[dict]:
    """Return the records of the demo version: originals (text, image, audio) and variants."""
    records = []
    for i in range(8):
        character = AIKO if i % 2 == 0 else BRAM
        records.append(
            {
                "id": original_id("sample" if i < 6 else "pippa", f"line{i}"),
                "parent_id": None,
                "source": "sample" if i < 6 else "pippa",
                "split": "train" if i < 6 else "test",
                "character": character,
                "messages": _turns(f"question number {i}", f"answer number {i} from the shelf"),
                "images": [],
                "audios": [],
                "augmentation": None,
            }
        )
    records[0]["messages"] = _turns(SCRIPT_TURN, "I will not run that.", "*The library is dim.*")
    records[0]["references"] = ["I shall not <b>run</b> it.", "No scripts here."]
    records[1]["messages"][0]["content"] = "<image>Look at this boat"
    records[1]["images"] = [{"bytes": png_bytes(), "path": "boat.png"}]
    records[2]["messages"][0]["content"] = "<audio>Hear the bell?"
    records[2]["audios"] = [{"bytes": wav_bytes(), "path": "bell.wav"}]
    parent = records[3]
    ops = [{"modality": "text", "op": "KeyboardAug", "params": json.dumps({"aug_char_p": 0.3})}]
    records.append(
        {
            **parent,
            "id": variant_id(parent["id"], "r" * 64, 0),
            "parent_id": parent["id"],
            "messages": [
                {**parent["messages"][0], "content": "questoin number 3"},
                parent["messages"][1],
            ],
            "augmentation": {"recipe_hash": "r" * 64, "copy": 0, "seed": 7, "ops": ops},
        }
    )
    return records


@dataclass(frozen=True)
class DemoStore:
    root: str
    records: list[dict]

    @property
    def store(self) -> Store:
        return Store(self.root, NAME)

    def by_id(self, record_id: str) -> dict:
        return next(r for r in self.records if r["id"] == record_id)


def shard_order(rows: list[dict]) -> list[dict]:
    """Return the rows of one split in the order their shard holds them: by the sha256 of
    the id, an order unrelated to the ids' (as the writer leaves rows in the order the
    record pass wrote them), so the viewer's tests prove it needs no order."""
    return sorted(rows, key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_version(
    store: Store,
    version: int,
    records: list[dict],
    fmt: str = "parquet",
    schema: pa.Schema = RECORD_SCHEMA,
    row_group_rows: int = 2,
    quarantine: list[dict] | None = None,
    sidecars: bool = True,
) -> Manifest:
    """Write `records` as a committed version: one shard per split, rows in `shard_order`
    (not id order, as the writer leaves them), each listed with its row-digest sidecar.
    `sidecars=False` writes a version as manifest format 1 did: rows in id order, no
    sidecars."""
    folder = store.version_dir(version)
    os.makedirs(folder, exist_ok=True)
    shards = []
    for split in ("train", "validation", "test"):
        rows = [r for r in records if r["split"] == split]
        rows = shard_order(rows) if sidecars else sorted(rows, key=lambda r: r["id"])
        if not rows:
            continue
        table = records_to_table(rows, schema)
        name = f"{split}-00000-of-00001.{fmt}"
        path = os.path.join(folder, name)
        if fmt == "parquet":
            pq.write_table(table, path, row_group_size=row_group_rows)
        else:
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
                writer.write_table(table, max_chunksize=row_group_rows)
        shards.append(
            ShardEntry(
                path=name,
                split=split,
                rows=len(rows),
                bytes=os.path.getsize(path),
                sha256=_sha256(path),
            )
        )
    run_id = f"run{version}"
    reasons: dict[str, int] = {}
    if quarantine:
        qpath = store.quarantine_path(run_id)
        os.makedirs(os.path.dirname(qpath), exist_ok=True)
        with open(qpath, "w", encoding="utf-8") as f:
            for entry in quarantine:
                f.write(json.dumps(entry) + "\n")
                reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    splits = {s.split: s.rows for s in shards}
    shards, digests = add_row_digests(folder, shards, LocalFS())
    if not sidecars:
        shutil.rmtree(os.path.join(folder, ROWS_FOLDER))
        shards = [
            s.model_copy(update={"row_digests": None, "row_digests_sha256": None}) for s in shards
        ]
    manifest = Manifest(
        format=MANIFEST_FORMAT if sidecars else MANIFEST_FORMAT_V1,
        name=store.name,
        version=version,
        parent_version=version - 1 if version > 1 else None,
        run_id=run_id,
        created_at="2026-12-06T12:00:00Z",
        inputs=[],
        recipe={"name": store.name, "sources": [{"name": "sample"}, {"name": "pippa"}]},
        recipe_hash="r" * 64,
        code_version=CodeVersion(),
        counts={},
        quarantine=QuarantineSummary(
            path=f"quarantine/{run_id}.jsonl" if quarantine else None, reasons=reasons
        ),
        augmentation=AugmentationSummary(),
        dedup=DedupSummary(),
        splits=splits,
        originals={
            s: sum(1 for r in records if r["split"] == s and not r["parent_id"]) for s in splits
        },
        shards=shards,
        schema_sha256=schema_sha256(schema),
        content_id=content_id(schema_sha256(schema), digests),
    ).sealed()
    with open(store.manifest_path(version), "wb") as f:
        f.write(manifest.to_json_bytes())
    return manifest


def write_model(store: Store, run_id: str, version: int, init: str | None, created: float) -> None:
    """Write a finished training run's files as trainers.run leaves them."""
    from trainers.curve import write_training_curve

    folder = store.models_dir(run_id)
    os.makedirs(folder, exist_ok=True)
    manifest = store.manifest(version)
    run = {
        "status": "done",
        "created": created,
        "dataset": {"name": store.name, "version": version, "content_id": manifest.content_id},
        "config": {"model": "tiny-random", "lora": {"r": 8}},
        "base_model": "tiny-random",
        "init": {"model_id": init} if init else None,
    }
    evaluation = {
        "split": "test",
        "samples": 2,
        "loss": 6.5,
        "perplexity": 665.1,
        "per_character": {"Aiko": {"samples": 1, "tokens": 10, "loss": 6.4, "perplexity": 601.8}},
        "generation": {"replies": 1, "ai_exposure_rate": 0.0},
        "replies": [
            {
                "id": "abc",
                "character": "Aiko",
                "prompt": "say something",
                "reference": "Quiet, please.",
                "reply": "<script>document.title='x'</script>shh",
            }
        ],
    }
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump(run, f)
    with open(os.path.join(folder, "eval.json"), "w") as f:
        json.dump(evaluation, f)
    if init:  # the retrain that made this model scored the one it continued on this version
        evals = os.path.join(store.models_dir(init), "evals")
        os.makedirs(evals, exist_ok=True)
        kept = {
            "eval_set": {"dataset": store.name, "version": version, "split": "test", "rows": 3},
            "evaluation": {**evaluation, "loss": 6.75, "replies": []},
        }
        with open(os.path.join(evals, "abc-def.json"), "w") as f:
            json.dump(kept, f)
    log = [{"step": s, "loss": 7.0 - s / 10, "learning_rate": 0.01} for s in range(1, 6)]
    write_training_curve(log + [{"step": 5, "eval_loss": 6.6}], folder)


def build_demo_store(root: str, fmt: str = "parquet", models: bool = True) -> DemoStore:
    """Write v1 (no quality column), v2 (with one) and two models, the second promoted."""
    from trainers.registry import ModelRegistry

    store = Store(root, NAME)
    records = demo_records()
    quarantine = [
        {
            "stage": "validate",
            "reason": "placeholder_mismatch",
            "message": "2 <image> placeholders, 1 image",
            "source": "sample",
            "source_ref": "corpus/dialogues.jsonl:33",
            "record_id": None,
            "excerpt": HOSTILE_EXCERPT,
        }
    ]
    write_version(store, 1, records, fmt, quarantine=quarantine, schema=BEFORE_QUALITY_SCHEMA)
    # v2: the first record removed, one reply edited, one record added; quality on all.
    edited = {**records[5], "messages": _turns("question number 5", "a better answer")}
    added = {**records[7], "id": original_id("pippa", "line8"), "messages": _turns("new", "newer")}
    flagged = []
    for i, record in [*enumerate(records[:5]), (5, edited), *enumerate(records[6:], 6), (9, added)]:
        if i == 0:
            continue
        flags = ["too_short"] if i in (4, 5) else []
        cluster = "c1" if i in (4, 6) else None
        flagged.append(
            {
                **record,
                "quality": {
                    "flags": flags,
                    "near_dup_cluster": cluster,
                    "tokens": 10 + i,
                    "language": "en",
                },
            }
        )
    write_version(store, 2, flagged, fmt)
    if not models:
        return DemoStore(root, records)
    write_model(store, "m1", 1, None, 1.0)
    write_model(store, "m2", 2, "m1", 2.0)
    registry = ModelRegistry(store)
    registry.promote("m1", "first model")
    registry.promote("m2", "beats m1")
    return DemoStore(root, records)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> DemoStore:
    """The demo store, built once per test module (the viewer only reads it)."""
    return build_demo_store(str(tmp_path_factory.mktemp("view") / "store"))


@pytest.fixture(scope="module")
def view_server(demo_store) -> Iterator[str]:
    """Serve the demo store on a free loopback port; yield the base URL (no trailing /)."""
    from pipeline.view import ViewServer, ViewSite

    server = ViewServer(ViewSite(demo_store.root), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
