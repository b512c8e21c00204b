"""The Space in a real browser: headless Chromium loads the page, runs an example, and the rendered result is
checked; a screenshot is saved (copied to docs/space_screenshot.png with MMKD_UPDATE_SCREENSHOT=1).

Chromium is driven over the Chrome DevTools Protocol with ``aiohttp``'s websocket client (already installed as a
dependency of ``datasets``). Skips cleanly when Debian's ``/usr/bin/chromium`` is absent
(``tests/setup_browser.sh`` installs it in ``make test``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers_hub import REPO_ROOT, VERBS, save_tiny_student

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (tests/setup_browser.sh)"),
]


class DevTools:
    """A minimal CDP client: send a command, wait for its answer."""

    def __init__(self, websocket):
        self.ws = websocket
        self.next_id = 0

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads((await self.ws.receive(timeout=60)).data)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.25)
        body = await self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
        raise AssertionError(f"timed out waiting for {what}; page text:\n{body}")


def start_chromium(profile: Path) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1400,1200", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return process, int(port_file.read_text().split()[0])
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("chromium did not open its DevTools port within 60 s")


async def run_example_in_browser(url: str, devtools_port: int, screenshot: Path) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t.get("type") == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            tools = DevTools(ws)
            await tools.call("Page.enable")
            await tools.call("Runtime.enable")
            await tools.call("Page.navigate", url=url)
            await tools.wait_for("!!document.querySelector('#classify')", 90, "the Space to render")
            example = await tools.wait_for(
                "(() => { const root = document.querySelector('#examples');"
                " if (!root) return null;"
                " const cell = root.querySelector('tbody tr, button.gallery-item, .gallery-item, button');"
                " if (!cell) return null; cell.click(); return cell.innerText || 'clicked'; })()",
                60, "the examples to render")
            assert example
            verbs_text = await tools.wait_for(
                "(() => { const el = document.querySelector('#student-verbs'); const info ="
                " document.querySelector('#student-info');"
                " return info && info.innerText.includes('end to end') && el ? el.innerText : null; })()",
                120, "the example's prediction")
            shot = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            return verbs_text


def test_browser_runs_an_example(tmp_path):
    from test_space import launch_space

    model_dir = save_tiny_student(tmp_path / "run" / "student")
    _, app, demo, url = launch_space(model_dir, tmp_path / "examples")
    process, port = start_chromium(tmp_path / "profile")
    try:
        screenshot = tmp_path / "space.png"
        verbs_text = asyncio.run(run_example_in_browser(url, port, screenshot))
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        demo.close()
    assert any(verb in verbs_text for verb in VERBS), verbs_text
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("MMKD_UPDATE_SCREENSHOT") == "1":  # refresh the README's picture on request only
        shutil.copyfile(screenshot, REPO_ROOT / "docs" / "space_screenshot.png")
