"""Installs that reproduce: constraints.txt pins every distribution roleforge needs, and the
bundled demo publishes exactly the content ids the README and the committed cards show."""

from __future__ import annotations

import re
import shutil
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.execution.job import run_recipe
from pipeline.recipe import load_recipe
from tests.reliability.conftest import ROOT

LOCK = ROOT / "constraints.txt"
EXTRAS = ("test", "gcs")  # what `make install` installs (test pulls gcs in)
# `$ roleforge retrain examples/demo.yaml` block: "dataset demo-roleplay@v1 (...) content id <16 hex>"
README_ID = re.compile(r"^dataset demo-roleplay@v(\d+) \(new, .*content id ([0-9a-f]{16})$", re.M)
CARD_ID = re.compile(r"^\| content id \| `([0-9a-f]{64})` \|$", re.M)


def _pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line!r}: every line of the lock pins one version (name==version)"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _needed(name: str, extras: tuple[str, ...], installed: dict[str, str], done: set) -> None:
    """Add `name` and everything it requires with `extras` to `installed` (name -> version)."""
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return  # a requirement this platform's markers leave out
    key = canonicalize_name(name)
    todo = [e for e in ("", *extras) if (key, e) not in done]
    done.update((key, e) for e in todo)
    installed[key] = dist.version
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in todo):
            _needed(req.name, tuple(req.extras), installed, done)


def test_the_lock_pins_every_installed_dependency_at_the_installed_version() -> None:
    installed: dict[str, str] = {}
    _needed("roleforge", EXTRAS, installed, set())
    del installed["roleforge"]
    pins = _pins()
    off = {n: (v, pins.get(n)) for n, v in installed.items() if pins.get(n) != v}
    assert not off, f"installed vs constraints.txt (refresh it with `make lock`): {off}"
    assert "roleforge" not in pins


def _readme_ids() -> dict[int, str]:
    return {int(v): c for v, c in README_ID.findall((ROOT / "README.md").read_text("utf-8"))}


def test_the_demo_publishes_the_content_ids_the_readme_and_the_cards_show(
    tmp_path: Path, ray_session: Any
) -> None:
    shown = _readme_ids()
    assert sorted(shown) == [1, 2], "the README's demo output lost its `content id` lines"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # store and cards land in tmp
    published = {}
    for recipe in ("demo.yaml", "demo_more.yaml"):
        result = run_recipe(load_recipe(tmp_path / "examples" / recipe))
        published[result.version] = result.content_id
    assert {v: c[:16] for v, c in published.items()} == shown
    for version, content in published.items():
        card = ROOT / "data_cards" / "demo-roleplay" / f"v{version}.md"
        assert CARD_ID.findall(card.read_text("utf-8")) == [content]
