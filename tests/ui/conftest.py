"""Fixtures of the web page tests: a served app and a Chromium page (skipped without one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.ui.support import CHROMIUM, CHROMIUM_ARGS, UIServer


@pytest.fixture
def ui_server() -> Iterator[UIServer]:
    server = UIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where a test saves its screenshots (artifacts under its temp dir)."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder
