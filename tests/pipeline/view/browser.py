"""A headless Debian chromium driven over the DevTools protocol (aiohttp's websocket client):
open a page, wait for its images and audio, report what loaded, take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser")
WINDOW = (1100, 900)
LOAD_TIMEOUT_S = 60

# Run in the page through DevTools (the page's CSP forbids its own scripts, not these):
# wait until every <audio> has its metadata or failed, then list what loaded.
_MEDIA_STATE = """
(async () => {
  const audios = [...document.querySelectorAll('audio')];
  await Promise.all(audios.map(a => a.readyState >= 1 || a.error ? 1 : new Promise(done => {
    a.addEventListener('loadedmetadata', done); a.addEventListener('error', done);
    setTimeout(done, 15000);
  })));
  await Promise.all([...document.images].map(i => i.complete ? 1 : new Promise(done => {
    i.addEventListener('load', done); i.addEventListener('error', done); setTimeout(done, 15000);
  })));
  return JSON.stringify({
    title: document.title,
    images: [...document.images].map(i => ({src: i.currentSrc, width: i.naturalWidth})),
    audios: audios.map(a => ({src: a.currentSrc, ready: a.readyState,
                              error: a.error ? a.error.code : null, duration: a.duration})),
  });
})()
"""


def find_chromium() -> str | None:
    """Return the chromium executable on PATH, or None."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@dataclass
class PageState:
    title: str
    images: list[dict[str, Any]]
    audios: list[dict[str, Any]]


class Chromium:
    """One headless chromium process with its own profile folder; close() ends it."""

    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="roleforge-chromium-")
        self.process = subprocess.Popen(
            [
                executable,
                "--headless=new",
                "--no-sandbox",  # tests run as root in containers
                "--disable-gpu",
                "--no-first-run",
                "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.port = self._devtools_port()

    def _devtools_port(self, timeout: float = 60.0) -> int:
        marker = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(marker):
                with open(marker) as f:
                    first = f.readline().strip()
                if first.isdigit():
                    return int(first)
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def open(self, url: str, screenshot: str) -> PageState:
        """Load `url`, wait for its media, save a PNG screenshot; return what loaded."""
        return asyncio.run(self._open(url, screenshot))

    async def _open(self, url: str, screenshot: str) -> PageState:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = itertools.count(1)
                events: list[str] = []

                async def call(method: str, **params: Any) -> dict[str, Any]:
                    number = next(ids)
                    await ws.send_str(
                        json.dumps({"id": number, "method": method, "params": params})
                    )
                    async for message in ws:
                        data = json.loads(message.data)
                        if data.get("id") == number:
                            if "error" in data:
                                raise RuntimeError(f"{method}: {data['error']}")
                            return data["result"]
                        if "method" in data:
                            events.append(data["method"])
                    raise RuntimeError("chromium closed the DevTools connection")

                await call("Page.enable")
                await call(
                    "Emulation.setDeviceMetricsOverride",
                    width=WINDOW[0],
                    height=WINDOW[1],
                    deviceScaleFactor=1,
                    mobile=False,
                )
                await call("Page.navigate", url=url)
                deadline = time.monotonic() + LOAD_TIMEOUT_S
                while "Page.loadEventFired" not in events:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} did not load in {LOAD_TIMEOUT_S} s")
                    await call("Runtime.evaluate", expression="1")
                    await asyncio.sleep(0.1)
                result = await call(
                    "Runtime.evaluate",
                    expression=_MEDIA_STATE,
                    awaitPromise=True,
                    returnByValue=True,
                )
                state = json.loads(result["result"]["value"])
                shot = await call("Page.captureScreenshot", format="png")
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return PageState(state["title"], state["images"], state["audios"])

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
