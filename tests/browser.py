"""Headless Chromium driven over the DevTools protocol (websockets, no extra package): load a page,
run JavaScript in it, take a screenshot — for UI checks a plain `--screenshot` cannot do (clicks)."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from tests.screenshots import CHROMIUM


class Page:
    def __init__(self, ws: Any) -> None:
        self.ws, self.next_id = ws, 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive in between; wait for our answer
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, script: str) -> Any:
        result = self.send("Runtime.evaluate", expression=script, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, script: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(script):
                return value
            time.sleep(0.5)
        raise TimeoutError(f"page never satisfied: {script}")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path


@contextmanager
def chromium_page(url: str, profile: Path, size: tuple[int, int] = (1400, 1800)) -> Iterator[Page]:
    assert CHROMIUM.exists(), "chromium is needed for this test: apt-get install chromium"
    proc = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
         f"--window-size={size[0]},{size[1]}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or len(port_file.read_text().split()) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "chromium did not start"
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        import requests

        (tab,) = [t for t in requests.get(f"http://127.0.0.1:{port}/json", timeout=10).json() if t["type"] == "page"]
        with connect(tab["webSocketDebuggerUrl"], max_size=None) as ws:
            page = Page(ws)
            page.send("Page.enable")
            page.send("Page.navigate", url=url)
            yield page
    finally:
        proc.terminate()
        proc.wait(timeout=30)
