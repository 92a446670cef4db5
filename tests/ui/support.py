"""The web page served from a thread of the test, and Chromium from the system packages."""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from flowbus.ui.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Milliseconds a page waits for something pushed before the test fails.
PUSHED_WITHIN_MS = 15_000

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and shutil.which("chromium") is None,
    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)",
)


async def snapshot(page: Page, path: Path, *, full_page: bool = False) -> None:
    """Save what the page shows as a test artifact.

    A screenshot documents a step and asserts nothing, so a Chromium that cannot capture one
    (it happens under load: "Unable to capture screenshot") leaves a note in its place instead
    of failing the test; a full-page capture is retried as a viewport one first.
    """
    attempts = [full_page, False] if full_page else [False]
    for whole in attempts:
        try:
            await page.screenshot(path=path, full_page=whole)
            return
        except PlaywrightError as error:
            reason = str(error).splitlines()[0]
    path.with_suffix(".txt").write_text(f"no screenshot: {reason}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Server(uvicorn.Server):
    """Tells the test when it listens (an event, not a sleep)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class UIServer:
    """``flowbus ui`` on a free port, on a thread (its own event loop, as a separate server)."""

    def __init__(self, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(token),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self.server = _Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> UIServer:
        self.thread.start()
        if not self.server.ready.wait(30):
            raise RuntimeError("the UI server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
