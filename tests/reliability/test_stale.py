"""Stale results: one byte of any input, one parameter or the seed gives a new content_id;
nothing changed gives the same one (and `unchanged`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.reliability.conftest import recipe_dict, run_json

pytestmark = pytest.mark.usefixtures("ray_session")


def _set(recipe: Path, **overrides) -> None:
    recipe.write_text(yaml.safe_dump(recipe_dict(**overrides)), encoding="utf-8")


def test_each_input_byte_parameter_and_seed_decides_the_content_id(
    corpus: Path, fault_free
) -> None:
    first = run_json(corpus)
    assert first["content_id"] == fault_free["content_id"]
    again = run_json(corpus)
    assert again["unchanged"] and again["content_id"] == first["content_id"]

    seen = {first["content_id"]}
    _set(corpus, seed=8)
    seen.add(run_json(corpus)["content_id"])
    _set(corpus, split={"by": "conversation", "validation": 0.25, "test": 0.2})
    seen.add(run_json(corpus)["content_id"])
    _set(corpus)
    image = corpus.parent / "images" / "3.png"
    original = image.read_bytes()
    changed = bytearray(original)
    changed[-20] ^= 0x01  # inside the IEND/IDAT tail: one byte of one input file
    image.write_bytes(bytes(changed))
    seen.add(run_json(corpus)["content_id"])
    assert len(seen) == 4, "a changed seed, parameter or input byte kept an old content_id"

    image.write_bytes(original)  # everything as at first: the first content again
    back = run_json(corpus)
    assert back["content_id"] == first["content_id"] and not back["unchanged"]


def test_a_licence_only_change_publishes_a_version_whose_card_states_it(corpus: Path) -> None:
    first = run_json(corpus)
    _set(corpus, license="cc-by-4.0")
    relicensed = run_json(corpus)
    assert not relicensed["unchanged"] and relicensed["version"] == first["version"] + 1
    assert relicensed["content_id"] == first["content_id"]  # the same records
    card = Path(relicensed["path"], "README.md").read_text(encoding="utf-8")
    assert "cc-by-4.0" in card
    assert run_json(corpus)["unchanged"]  # and now nothing changed
