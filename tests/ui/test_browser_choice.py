"""A pause that waits for one of several inputs (``Approve | Reject``) in a real Chromium: the
form offers the choice, shows and sends only the chosen model's fields, names the field the
chosen model refuses, and the flow gets that model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest
from playwright.async_api import Browser
from pydantic import Field

from flowbus import RunInput, StateType, flow, pause_flow_run
from tests.runs import read
from tests.ui.support import PUSHED_WITHIN_MS, UIServer, needs_chromium, snapshot
from tests.ui.test_browser import open_live

pytestmark = [pytest.mark.anyio, needs_chromium]


class Approve(RunInput):
    comment: str = ""


class Reject(RunInput):
    reason: str = Field(min_length=1, description="Why it may not ship")
    severity: Literal["low", "high"] = "low"


@flow(name="ui-choice")
async def decide() -> str:
    got = await pause_flow_run(wait_for_input=Approve | Reject, timeout=300)
    return f"{type(got).__name__}: {got.model_dump()}"


async def test_the_form_offers_the_choice_of_models(
    ui_server: UIServer, browser: Browser, shots: Path, runtime_closed: None
) -> None:
    # Given a run paused for Approve | Reject, and its page open
    handle = asyncio.ensure_future(decide(return_state=True))
    page = await open_live(browser, f"{ui_server.url}/inbox")
    row = page.locator(".inbox-row")
    await row.wait_for(timeout=PUSHED_WITHIN_MS)
    run_id = await row.get_attribute("data-run-id")
    assert run_id is not None
    await row.locator("a").click()
    await page.locator("#input-choice").wait_for()
    await page.locator("body.connected").wait_for(timeout=PUSHED_WITHIN_MS)
    # Then it offers both models, the first chosen: only its fields are shown
    labels = await page.locator("#input-choice label").all_inner_texts()
    assert [label.strip() for label in labels] == ["Approve", "Reject"]
    assert await page.locator('[name="comment"]').is_visible()
    assert not await page.locator('[name="reason"]').is_visible()
    await snapshot(page, shots / "1-choice.png", full_page=True)
    # When Reject is chosen and sent with an empty reason
    await page.check('[data-choice="1"]')
    assert await page.locator('[name="reason"]').is_visible()
    assert not await page.locator('[name="comment"]').is_visible()
    await page.select_option('[name="severity"]', label="high")
    await page.click("#resume")
    # Then the chosen model's refusal shows next to its field, and the run stays paused
    error = page.locator('[data-error-for="reason"]')
    await error.wait_for(timeout=PUSHED_WITHIN_MS)
    assert "non-empty" in await error.inner_text()
    assert await page.is_checked('[data-choice="1"]')
    assert await page.input_value('[name="severity"]') == '"high"'
    assert (await read(run_id)).state.type is StateType.PAUSED
    await snapshot(page, shots / "2-refused.png", full_page=True)
    # When a reason is given, Then the flow gets a Reject with exactly that
    await page.fill('[name="reason"]', "too big")
    await page.click("#resume")
    await page.locator('#run-state[data-state="COMPLETED"]').wait_for(timeout=PUSHED_WITHIN_MS)
    state = await asyncio.wait_for(handle, 30)
    assert await state.aresult() == "Reject: {'reason': 'too big', 'severity': 'high'}"
    await snapshot(page, shots / "3-completed.png", full_page=True)
