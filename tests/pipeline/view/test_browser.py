"""`roleforge view` in a real browser: Debian's chromium, headless, loads the rows page of a
demo version and the models page; every image and audio element must load.

`make chromium` installs chromium (as root, with apt-get); without it this test skips.
ROLEFORGE_VIEW_STORE=<store> points it at another store (e.g. ./roleforge-store after
`make demo`, dataset demo-roleplay); ROLEFORGE_SCREENSHOTS=<dir> keeps the screenshots.
"""

from __future__ import annotations

import os
import shutil
import struct
import threading

import pytest

from pipeline.view import ViewServer, ViewSite
from tests.pipeline.view.browser import Chromium, find_chromium
from tests.pipeline.view.conftest import NAME

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not found: `make chromium` installs Debian's chromium (as root)",
)


def _png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def served(demo_store):
    root = os.environ.get("ROLEFORGE_VIEW_STORE") or demo_store.root
    name = "demo-roleplay" if os.environ.get("ROLEFORGE_VIEW_STORE") else NAME
    server = ViewServer(ViewSite(root), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    browser = Chromium(CHROMIUM)
    try:
        yield server.url.rstrip("/"), name, root, browser
    finally:
        browser.close()
        server.shutdown()
        server.server_close()
        thread.join()


def _keep(shot: str) -> None:
    folder = os.environ.get("ROLEFORGE_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        shutil.copy(shot, os.path.join(folder, os.path.basename(shot)))


def test_chromium_shows_the_rows_page_with_its_images_and_audio(served, tmp_path):
    base, name, root, browser = served
    shot = str(tmp_path / "view-rows.png")
    state = browser.open(f"{base}/d/{name}/v1/?modality=audio", shot)
    assert state.title == f"{name}@v1: rows"
    assert state.audios and state.images  # spectrograms are images
    for image in state.images:
        assert image["width"] > 0, image  # decoded: the server sent a real picture
    for audio in state.audios:
        assert audio["error"] is None and audio["ready"] >= 1 and audio["duration"] > 0, audio
    shot_images = str(tmp_path / "view-images.png")
    state = browser.open(f"{base}/d/{name}/v1/?modality=image", shot_images)
    assert state.images and all(i["width"] > 0 for i in state.images)
    assert _png_size(shot) == (1100, 900)
    _keep(shot)
    _keep(shot_images)


def test_chromium_shows_the_models_page_and_a_model_with_its_training_curve(served, tmp_path):
    from pipeline.store.read import Store
    from trainers.registry import ModelRegistry

    base, name, root, browser = served
    shot = str(tmp_path / "view-models.png")
    state = browser.open(f"{base}/d/{name}/models/", shot)
    assert state.title == f"{name}: models"
    promoted = ModelRegistry(Store(root, name)).pointer().model_id
    model_shot = str(tmp_path / "view-model.png")
    state = browser.open(f"{base}/d/{name}/models/{promoted}/", model_shot)
    curves = [i for i in state.images if i["src"].endswith("/training_curve.png")]
    assert curves and curves[0]["width"] > 0
    _keep(shot)
    _keep(model_shot)
