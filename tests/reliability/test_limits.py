"""Limits that hold: a non-finite limit is refused at recipe load, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from tests.fixtures.corpus import write_jsonl

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
