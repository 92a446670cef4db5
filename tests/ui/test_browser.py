"""The web page in a real Chromium: a pause shows up live, is answered through the form
generated from its schema (refused input shown by field, the run still paused), and the run
page follows it to COMPLETED without a reload."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest
from playwright.async_api import Browser, Page
from pydantic import BaseModel, Field

from flowbus import RunInput, StateType, flow, pause_flow_run
from tests.runs import launch, read
from tests.ui.support import PUSHED_WITHIN_MS, UIServer, needs_chromium, snapshot

pytestmark = [pytest.mark.anyio, needs_chromium]


class Address(BaseModel):
    city: str = Field(description="Where the boxes go")
    floor: int | None = None


class Shipment(RunInput):
    speed: Literal["standard", "express"] = "standard"
    quantity: int = Field(1, ge=1, description="Boxes to send")
    address: Address
    labels: list[str] = []
    fragile: bool = False


@flow
async def ship(order: str) -> str:
    answer = await pause_flow_run(
        wait_for_input=Shipment.with_initial_data(
            description="**Check** the order before it ships", speed="express"
        ),
        timeout=300,
    )
    assert isinstance(answer, Shipment)
    return f"{order}: {answer.speed} x{answer.quantity} to {answer.address.city} {answer.labels}"


@flow
async def sneaky() -> None:
    text = '# Hello\n<script>window.hacked = 1</script> <img src=x onerror="window.hacked = 2">'
    await pause_flow_run(wait_for_input=Shipment.with_initial_data(description=text), timeout=300)


async def open_live(browser: Browser, url: str) -> Page:
    """A page whose event stream is open (so nothing pushed after this is missed)."""
    page = await browser.new_page(viewport={"width": 1200, "height": 1000})
    await page.goto(url)
    await page.locator("body.connected").wait_for(timeout=PUSHED_WITHIN_MS)
    return page


async def test_a_pause_is_answered_through_its_generated_form(
    ui_server: UIServer, browser: Browser, shots: Path, runtime_closed: None
) -> None:
    # Given the inbox open in a browser
    page = await open_live(browser, f"{ui_server.url}/inbox")
    await snapshot(page, shots / "1-inbox-empty.png")
    # When a run pauses for typed input, it appears without a reload
    handle = launch(ship, "order-17")
    row = page.locator(".inbox-row")
    await row.wait_for(timeout=PUSHED_WITHIN_MS)
    run_id = await row.get_attribute("data-run-id")
    assert run_id is not None
    await snapshot(page, shots / "2-inbox-paused.png")
    # And its page shows a form generated from the schema, defaults filled in
    await row.locator("a").click()
    await page.locator("#resume-form").wait_for()
    await page.locator("body.connected").wait_for(timeout=PUSHED_WITHIN_MS)
    assert await page.input_value('[name="speed"]') == '"express"'
    assert "Check" in await page.inner_text("#pause-description")
    # When it is filled with an enum, a nested field, a list, and a quantity below the minimum
    await page.select_option('[name="speed"]', label="standard")
    await page.fill('[name="address.city"]', "Lyon")
    add = page.locator('[data-add-row="labels"]')
    await add.click()
    await add.click()
    await page.fill('[name="labels.0"]', "top")
    await page.fill('[name="labels.1"]', "side")
    await page.fill('[name="quantity"]', "0")
    await page.click("#resume")
    # Then the refusal shows next to the field, what was typed stays, and the run stays paused
    error = page.locator('[data-error-for="quantity"]')
    await error.wait_for(timeout=PUSHED_WITHIN_MS)
    assert "minimum" in await error.inner_text()
    assert await page.input_value('[name="address.city"]') == "Lyon"
    assert await page.input_value('[name="labels.1"]') == "side"
    assert (await read(run_id)).state.type is StateType.PAUSED
    await snapshot(page, shots / "3-run-refused.png", full_page=True)
    # When a valid quantity is sent
    await page.fill('[name="quantity"]', "2")
    await page.click("#resume")
    # Then the run page shows COMPLETED, pushed, and the flow got exactly that input
    await page.locator('#run-state[data-state="COMPLETED"]').wait_for(timeout=PUSHED_WITHIN_MS)
    await snapshot(page, shots / "4-run-completed.png", full_page=True)
    state = await asyncio.wait_for(handle, 30)
    assert await state.result() == "order-17: standard x2 to Lyon ['top', 'side']"
    assert await page.locator("#resume-form").count() == 0


async def test_a_description_with_html_shows_as_text(
    ui_server: UIServer, browser: Browser, shots: Path, runtime_closed: None
) -> None:
    handle = launch(sneaky)
    page = await open_live(browser, f"{ui_server.url}/inbox")
    row = page.locator(".inbox-row")
    await row.wait_for(timeout=PUSHED_WITHIN_MS)
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await row.locator("a").click()
    description = page.locator("#pause-description")
    await description.wait_for()
    await snapshot(page, shots / "xss.png", full_page=True)
    shown = await description.inner_text()
    assert "<script>window.hacked = 1</script>" in shown
    assert 'onerror="window.hacked = 2"' in shown
    assert await description.locator("script, img").count() == 0
    assert await page.evaluate("window.hacked === undefined")
    assert dialogs == []
    handle.cancel()
