"""The page's other forms in a real Chromium: a deployment's run form generated from its
parameter schema (refused parameters shown by field, nothing created; then a run created and
opened), and a run page's Suspend and Cancel buttons on a run a real worker holds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from playwright.async_api import Browser, Dialog

from flowbus import StateType, flow, get_client
from tests.conftest import TestServer, env_for_subprocess
from tests.e2e.flows_module import key
from tests.e2e.support import WorkerProcess, dump_logs, is_suspended, spawn_worker, wait_for_run
from tests.redis_clients import async_redis
from tests.runs import read
from tests.ui.support import PUSHED_WITHIN_MS, UIServer, needs_chromium, snapshot
from tests.ui.test_browser import open_live

pytestmark = [pytest.mark.anyio, needs_chromium]


@flow(name="ui-report")
async def report(day: str, copies: int = 2, paper: Literal["A4", "letter"] = "A4") -> str:
    return f"{day} x{copies} {paper}"


async def test_a_deployment_is_run_through_its_generated_form(
    ui_server: UIServer, browser: Browser, shots: Path, runtime_closed: None
) -> None:
    # Given a deployment of a flow with a required, a defaulted and a Literal parameter
    await report.adeploy("daily", parameters={"copies": 3})
    page = await open_live(browser, f"{ui_server.url}/deployments")
    form = page.locator("section.deployment form")
    # Then its form has one field per parameter, the deployment's defaults filled in
    assert await form.locator('[name="copies"]').input_value() == "3"
    assert await form.locator('select[name="paper"] option').all_inner_texts() == ["A4", "letter"]
    await snapshot(page, shots / "1-deployments.png", full_page=True)
    # When it is sent with a number that is none
    await form.locator('[name="day"]').fill("2026-11-27")
    await form.locator('[name="copies"]').evaluate("el => { el.type = 'text'; el.value = 'two' }")
    await form.locator("button[type=submit]").click()
    # Then the refusal shows next to that field, and no run was created
    error = page.locator('[data-error-for="copies"]')
    await error.wait_for(timeout=PUSHED_WITHIN_MS)
    assert "integer" in await error.inner_text()
    async with get_client() as client:
        assert await client.read_flow_runs(flow_name="ui-report") == []
    await snapshot(page, shots / "2-deployment-refused.png", full_page=True)
    # When valid parameters are sent
    await page.locator('section.deployment [name="copies"]').fill("5")
    await page.locator('section.deployment select[name="paper"]').select_option(label="letter")
    await page.locator("section.deployment button[type=submit]").click()
    # Then the new run's page opens, and the run got exactly those parameters
    state = page.locator("#run-state")
    await state.wait_for(timeout=PUSHED_WITHIN_MS)
    assert await state.get_attribute("data-state") == "SCHEDULED"
    async with get_client() as client:
        [run] = await client.read_flow_runs(flow_name="ui-report")
    assert page.url.endswith(f"/runs/{run.id}")
    assert run.parameters == {"day": "2026-11-27", "copies": 5, "paper": "letter"}
    await snapshot(page, shots / "3-run-created.png", full_page=True)


@pytest.fixture
def worker(redis_server: TestServer, flowbus_env: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    started = spawn_worker(env_for_subprocess(redis_server.url, flowbus_env), tmp_path, "ui-w")
    ok = False
    try:
        yield started
        ok = True
    finally:
        started.ensure_stopped()
        if not ok:
            dump_logs([started])


@pytest.mark.e2e
@pytest.mark.timeout(150)
async def test_suspend_and_cancel_buttons(
    ui_server: UIServer,
    browser: Browser,
    shots: Path,
    worker: WorkerProcess,
    redis_server: TestServer,
    runtime_closed: None,
) -> None:
    redis = async_redis(redis_server.url)
    try:
        # Given a deployed run that a worker holds, blocked in a task
        async with get_client() as client:
            dep = await client.create_deployment("long-running", "ui")
            run = await client.create_flow_run_from_deployment(dep, {"tag": "ui"})
        assert await redis.blpop([key("started:ui-gate")], timeout=90) is not None
        page = await open_live(browser, f"{ui_server.url}/runs/{run.id}")
        assert await page.get_attribute("#run-state", "data-state") == "RUNNING"
        # When Suspend is pressed, the run is asked to stop at its next task boundary
        await page.click("#suspend")
        notice = page.locator("#action-result .notice")
        await notice.wait_for(timeout=PUSHED_WITHIN_MS)
        assert await notice.inner_text() == f"Suspending {run.id}"
        await redis.rpush(key("open:ui-gate"), "1")
        # Then the page shows it suspended, pushed, and no process holds it
        suspended = page.locator('#run-state[data-state="PAUSED"]:has-text("Suspended")')
        await suspended.wait_for(timeout=PUSHED_WITHIN_MS)
        assert is_suspended(await wait_for_run(run.id, is_suspended))
        await snapshot(page, shots / "1-suspended.png", full_page=True)
        # When Cancel is pressed and confirmed
        page.on("dialog", lambda d: asyncio.ensure_future(_accept(d)))
        await page.click("#cancel")
        # Then it is cancelled at once, and the page shows it
        await page.locator('#run-state[data-state="CANCELLED"]').wait_for(timeout=PUSHED_WITHIN_MS)
        assert await notice.inner_text() == f"Cancelled {run.id}"
        assert (await read(run.id)).state.type is StateType.CANCELLED
        await snapshot(page, shots / "2-cancelled.png", full_page=True)
    finally:
        await redis.aclose()


async def _accept(dialog: Dialog) -> None:
    assert dialog.type == "confirm"
    await dialog.accept()
