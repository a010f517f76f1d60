"""Limits that hold: a non-finite limit is refused at recipe load, before any work, and
augmented variants are held to the limits their originals were checked against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.store.read import Store
from tests.fixtures.corpus import write_bytes, write_jsonl
from tests.fixtures.media import audio_bytes
from tests.reliability.conftest import all_versions_intact, ids_of

TURNS = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_a_non_finite_audio_limit_is_refused_at_load_naming_the_key(
    tmp_path: Path, value: str
) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"messages": TURNS}])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: ds\nstore: store\nsources: [{name: s, path: d.jsonl}]\n"
        f"limits: {{max_audio_seconds: {value}}}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["run", str(recipe)])
    assert result.exit_code == 2
    assert "limits.max_audio_seconds:" in result.stderr
    assert not (tmp_path / "store").exists()


def test_a_variant_stretched_over_the_audio_limit_is_dropped_and_counted_and_its_original_kept(
    tmp_path: Path, ray_session: Any
) -> None:
    # 1.0 s clips under a 1.05 s limit; SpeedPerturb 0.9 makes them 1.11 s long.
    records = []
    for i in range(4):
        write_bytes(tmp_path / f"a{i}.wav", audio_bytes("WAV", 1.0, 8000 + 100 * i))
        turns = [
            {"role": "user", "content": f"Listen {i}: <audio>"},
            {"role": "assistant", "content": f"I hear it, {i}."},
        ]
        records.append({"messages": turns, "audios": [f"a{i}.wav"]})
    write_jsonl(tmp_path / "d.jsonl", records)
    recipe = {
        "name": "clips",
        "store": "store",
        "cards_dir": "cards",
        "seed": 3,
        "sources": [{"name": "s", "path": "d.jsonl"}],
        "split": {"validation": 0.0, "test": 0.0},
        "limits": {"max_audio_seconds": 1.05},
        "augment": {"copies": 2, "audio": [{"op": "SpeedPerturb", "factors": [0.9]}]},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")

    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--json"])

    assert result.exit_code == 0, result.output
    store = Store(str(tmp_path / "store"), "clips")
    manifest = store.manifest()
    assert manifest.augmentation.stats["dropped_variants"] == 8  # 4 originals x 2 copies
    assert sum(ids_of(store).values()) == 4  # every original kept, no variant
    assert all_versions_intact(store) == [1]
    assert json.loads(result.stdout)["counts"]["augment"]["quarantined"] == 0
