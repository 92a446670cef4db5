"""Who may use the page, and a page of a long history: a token on an open address, CSRF on
every state change, and 10,000 runs listed a page at a time."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import ConfigurationError
from flowbus.ui.serve import check_exposure
from tests.test_cli import cli
from tests.ui.support import PUSHED_WITHIN_MS, UIServer, needs_chromium, snapshot

pytestmark = pytest.mark.anyio
TOKEN = "t0ken-for-tests"


@pytest.fixture
def guarded_server() -> Iterator[UIServer]:
    server = UIServer(token=TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


@needs_chromium
async def test_a_token_is_needed_on_every_request(
    guarded_server: UIServer, browser: Browser, shots: Path
) -> None:
    page = await browser.new_page()
    # Without the token: refused, pages and the event stream alike
    refused = await page.goto(f"{guarded_server.url}/inbox")
    assert refused is not None and refused.status == 401
    stream = await page.request.get(f"{guarded_server.url}/events")
    assert stream.status == 401
    await snapshot(page, shots / "token-refused.png")
    # With it in the address: remembered in a cookie, dropped from the address
    opened = await page.goto(f"{guarded_server.url}/inbox?token={TOKEN}")
    assert opened is not None and opened.status == 200
    assert page.url == f"{guarded_server.url}/inbox"
    await page.locator("body.connected").wait_for(timeout=PUSHED_WITHIN_MS)
    await snapshot(page, shots / "token-accepted.png")
    # A state change without the CSRF token is refused, even with the token cookie
    forged = await page.request.post(
        f"{guarded_server.url}/runs/00000000-0000-4000-8000-000000000001/cancel",
        form={"csrf": "guess"},
    )
    assert forged.status == 403


async def test_an_open_address_needs_a_token() -> None:
    with pytest.raises(ConfigurationError, match="FLOWBUS_UI_TOKEN"):
        check_exposure("0.0.0.0", None)
    check_exposure("0.0.0.0", "x")
    check_exposure("127.0.0.1", None)
    env = {k: v for k, v in os.environ.items() if k != "FLOWBUS_UI_TOKEN"}
    done = await cli("ui", "--host", "0.0.0.0", "--port", "1", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: refusing to serve on 0.0.0.0")
    assert len(done.stderr.strip().splitlines()) == 1


@needs_chromium
@pytest.mark.timeout(120)
async def test_ten_thousand_runs_are_listed_a_page_at_a_time(
    ui_server: UIServer, browser: Browser, shots: Path, runtime_closed: None
) -> None:
    store = (await get_runtime()).store
    for _ in range(20):
        await asyncio.gather(*(store.create_run("many") for _ in range(500)))
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(f"{ui_server.url}/runs")
    rows = page.locator("#runs-rows tr.run-row")
    assert await rows.count() == 50
    first = await rows.first.get_attribute("id")
    await snapshot(page, shots / "runs-page-1.png")
    await page.click("#next-page")
    await page.locator("#runs-rows").wait_for()
    assert await rows.count() == 50
    assert await rows.first.get_attribute("id") != first
    await snapshot(page, shots / "runs-page-2.png")
