"""Poison: valid records mixed with mutated ones. Every good record survives reading and
validation; every bad one is quarantined with a named reason (never `stage_error`, which
would mean an unexpected exception); nothing is lost without a count."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.readers import read_source
from pipeline.recipe import MediaLimits, parse_recipe
from pipeline.record.rejection import REASONS, QuarantineEntry
from pipeline.record.schema import WORK_SCHEMA, records_to_table
from pipeline.stages.base import BatchContext
from pipeline.stages.validate import ValidateStage
from tests.fixtures.corpus import write_bytes, write_jsonl
from tests.fixtures.media import audio_bytes, image_bytes, truncated


def _valid(i: int) -> dict[str, Any]:
    return {
        "character": "Vela",
        "messages": [
            {"role": "user", "content": f"<image> look, number {i}. <audio>"},
            {"role": "assistant", "content": f"I see it, {i}."},
        ],
        "images": ["images/ok.png"],
        "audios": ["audio/ok.wav"],
    }


def _with(**fields: Any):
    return lambda r: {**r, **fields}


def _turns(change):
    return lambda r: {**r, "messages": change([dict(m) for m in r["messages"]])}


# Each mutation makes a record that must be refused, with one of these reasons.
MUTATIONS: dict[str, tuple[Any, set[str]]] = {
    "not JSON": (lambda r: b'{"messages": [', {"invalid_json"}),
    "not UTF-8": (lambda r: b'\xff\xfe{"messages": []}', {"invalid_utf8", "invalid_json"}),
    "no messages": (_with(messages=[]), {"empty_messages"}),
    "messages not a list": (_with(messages="hello"), {"wrong_types"}),
    "NaN content": (
        _turns(lambda ms: [{**ms[0], "content": math.nan}, ms[1]]),
        {"wrong_types"},
    ),
    "no assistant turn": (
        _turns(lambda ms: [ms[0], {**ms[1], "role": "user"}]),
        {"no_assistant_turn", "bad_turn_order"},
    ),
    "an extra placeholder": (
        _turns(lambda ms: [{**ms[0], "content": ms[0]["content"] + " <image>"}, ms[1]]),
        {"placeholder_mismatch"},
    ),
    "a missing image file": (_with(images=["images/nope.png"]), {"missing_media"}),
    "an image outside the corpus": (
        _with(images=["../../../etc/hostname"]),
        {"media_outside_root"},
    ),
    "a corrupt image": (_with(images=["images/corrupt.png"]), {"corrupt_image"}),
    "a truncated WAV": (_with(audios=["audio/truncated.wav"]), {"corrupt_audio"}),
    "an unknown character": (_with(character="Nobody"), {"unknown_character"}),
}


def _write(folder: Path, plan: list[str | None]) -> Path:
    write_bytes(folder / "images/ok.png", image_bytes("PNG", 8, 40))
    write_bytes(folder / "images/corrupt.png", truncated(image_bytes("PNG", 16, 40), 0.4))
    write_bytes(folder / "audio/ok.wav", audio_bytes("WAV", 0.1, 8000))
    write_bytes(folder / "audio/truncated.wav", truncated(audio_bytes("WAV", 0.1, 8000), 0.6))
    write_jsonl(
        folder / "characters.jsonl",
        [{"name": "Vela", "profile": "A test persona.", "greeting": "Hi", "catchphrases": []}],
    )
    lines = []
    for i, mutation in enumerate(plan):
        record = _valid(i)
        lines.append(record if mutation is None else MUTATIONS[mutation][0](record))
    path = folder / "d.jsonl"
    with open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            f.write(b"\n")
    return path


def _outcomes(folder: Path) -> tuple[list[str], list[QuarantineEntry]]:
    recipe = parse_recipe(
        {
            "name": "poison",
            "sources": [{"name": "s", "path": "d.jsonl", "characters": "characters.jsonl"}],
        },
        base_dir=str(folder),
        check_ops=False,
    )
    records, rejected = [], []
    for item in read_source(recipe.sources[0], recipe):
        (rejected if isinstance(item, QuarantineEntry) else records).append(item)
    table = records_to_table(records, WORK_SCHEMA)
    result = ValidateStage(MediaLimits()).process(table, BatchContext())
    return result.table["source_ref"].to_pylist(), rejected + result.rejects


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), st.sampled_from(sorted(MUTATIONS))), min_size=1, max_size=12))
def test_good_records_survive_and_bad_ones_are_quarantined_with_their_reason(
    plan: list[str | None],
) -> None:
    with tempfile.TemporaryDirectory(prefix="rel-poison-") as tmp:
        _write(Path(tmp), plan)
        kept, rejected = _outcomes(Path(tmp))
    line = {i + 1: mutation for i, mutation in enumerate(plan)}
    assert sorted(int(ref.rsplit(":", 1)[1]) for ref in kept) == [
        n for n, m in line.items() if m is None
    ]
    assert len(rejected) == sum(m is not None for m in plan)
    for entry in rejected:
        mutation = line[int(entry.source_ref.rsplit(":", 1)[1])]
        assert mutation is not None
        assert entry.reason in REASONS and entry.reason != "stage_error", entry
        assert entry.reason in MUTATIONS[mutation][1], (mutation, entry)
