"""`roleforge view --out DIR`: the same pages as files, every link relative and resolvable."""

from __future__ import annotations

import html
import os
import re

from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.view.static import file_for
from tests.pipeline.view.conftest import NAME


def _links(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [html.unescape(u) for u in re.findall(r'(?:href|src)="([^"]*)"', f.read())]


def test_the_static_copy_holds_the_pages_and_media_with_relative_links(demo_store, tmp_path):
    out = tmp_path / "site"
    result = CliRunner().invoke(app, ["view", "--store", demo_store.root, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = out / "d" / NAME / "v1" / "index.html"
    assert rows.exists() and (out / "index.html").exists()
    for name in ("quality.html", "quarantine.html"):
        assert (out / "d" / NAME / "v2" / name).exists()
    assert (out / "d" / NAME / "models" / "m2" / "index.html").exists()
    pages = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs if f.endswith(".html")]
    for page in pages:
        for link in _links(page):
            assert not link.startswith("/"), (page, link)  # nothing points at the server
            if link == "#" or link.startswith("#"):
                continue
            assert os.path.exists(os.path.join(os.path.dirname(page), link)), (page, link)
    text = rows.read_text(encoding="utf-8")
    assert "<form" not in text  # nothing would answer it
    assert "&lt;script&gt;" in text and "<script" not in text
    image = next(r for r in demo_store.records if r["images"])
    media = out / "d" / NAME / "v1" / "m" / image["id"] / "images" / "0.png"
    assert media.read_bytes() == image["images"][0]["bytes"]


def test_file_names_of_pages_queries_and_media():
    assert file_for("/") == "index.html"
    assert file_for("/d/x/v1/") == "d/x/v1/index.html"
    assert file_for("/d/x/v1/?after=0.50&page=2") == "d/x/v1/index-after-0.50-page-2.html"
    assert file_for("/d/x/v1/quality") == "d/x/v1/quality.html"
    assert file_for("/d/x/v1/m/ab/images/0.png") == "d/x/v1/m/ab/images/0.png"
