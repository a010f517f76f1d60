"""A recipe with an unknown or ill-typed key fails before any work, naming the key (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.recipe import parse_recipe
from pipeline.record.config import RecipeError
from tests.fixtures.corpus import write_jsonl, write_recipe

runner = CliRunner()
TURNS = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


@pytest.mark.parametrize(
    ("source_extra", "top", "key"),
    [
        ({}, {"max_bad_fractoin": 0.1}, "max_bad_fractoin: unknown key"),
        ({"allow_outside": True}, {}, "sources.0.allow_outside: unknown key"),
        ({}, {"limits": {"max_image_pixel": 10}}, "limits.max_image_pixel: unknown key"),
        ({}, {"max_bad_fraction": "lots"}, "max_bad_fraction:"),
        ({}, {"limits": {"max_audio_seconds": "long"}}, "limits.max_audio_seconds:"),
        ({"allow_outside_root": "please"}, {}, "sources.0.allow_outside_root:"),
        ({"format": "csv"}, {}, "sources.0.format:"),
    ],
    ids=[
        "unknown-top",
        "unknown-source",
        "unknown-limit",
        "ill-typed-top",
        "ill-typed-limit",
        "ill-typed-source",
        "bad-format",
    ],
)
def test_bad_recipe_key_exits_2_naming_the_key_before_any_work(
    tmp_path: Path, source_extra: dict[str, Any], top: dict[str, Any], key: str
) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"messages": TURNS}])
    recipe = write_recipe(tmp_path, [{"name": "s", "path": "d.jsonl", **source_extra}], **top)
    result = runner.invoke(app, ["ingest", str(recipe), "--json"])
    assert result.exit_code == 2
    assert key in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "store").exists()


def test_recipe_errors_list_every_bad_key() -> None:
    data = {"name": "x", "sources": [{"name": "s", "path": "d.jsonl", "colour": 1}], "seed": "abc"}
    with pytest.raises(RecipeError) as exc:
        parse_recipe(data, check_ops=False)
    lines = str(exc.value).splitlines()
    assert any(line.startswith("sources.0.colour: unknown key") for line in lines)
    assert any(line.startswith("seed:") for line in lines)


def test_limits_have_sane_defaults_and_are_configurable() -> None:
    base = {"name": "x", "sources": [{"name": "s", "path": "d.jsonl"}]}
    default = parse_recipe(base, check_ops=False).limits
    assert default.max_image_pixels >= 10_000_000 and default.max_audio_seconds >= 60
    custom = parse_recipe({**base, "limits": {"max_media_bytes": 1000}}, check_ops=False).limits
    assert custom.max_media_bytes == 1000
    assert parse_recipe(base, check_ops=False).max_bad_fraction == 0.05
