"""The inbox is complete, a page at a time: every run waiting for input once, those with a
deadline soonest first (from the queues' deadline indexes), then those without one newest
first; no page reads more than its budget of index entries per queue."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from flowbus._redis.runtime import get_runtime
from flowbus.views.runs import RunSummary, awaiting_input
from tests.ui.support import UIServer

pytestmark = pytest.mark.anyio


async def _waiting(queue: str, timeout_ms: int | None) -> str:
    """A run suspended for input (its deadline ``timeout_ms`` from now, or none)."""
    store = (await get_runtime()).store
    run = await store.create_run("inbox-flow", queue=queue, start=True)
    keys = await store.run_keys(run.id)
    reply = await store.scripts.pause(
        keys,
        key="ask",
        timeout_ms=timeout_ms,
        reschedule=True,
        state_name="Suspended",
        input_prefix="paused-ask",
        schema='{"type": "object"}',
    )
    assert reply.accepted, reply
    return str(run.id)


async def _pages(limit: int, budget: int) -> list[list[RunSummary]]:
    runtime = await get_runtime()
    pages, cursor = [], None
    while True:
        page = await awaiting_input(runtime, limit=limit, cursor=cursor, scan_budget=budget)
        pages.append(page.runs)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def test_every_waiting_run_is_listed_once_deadlines_first(runtime_closed: None) -> None:
    # Given runs waiting for input on two queues, with deadlines interleaved and without one,
    # and runs that wait for nothing (running; scheduled, in the deadline index too)
    hour = 3_600_000
    timed = [await _waiting("inbox-a" if i % 2 else "inbox-b", hour + i * 60_000) for i in range(9)]
    untimed = [await _waiting("inbox-a" if i % 2 else "inbox-b", None) for i in range(5)]
    store = (await get_runtime()).store
    await store.create_run("inbox-flow", queue="inbox-a", start=True)
    later = datetime.now(UTC) + timedelta(minutes=1)
    await store.create_run("inbox-flow", queue="inbox-b", scheduled_time=later)
    # When the inbox is read 4 runs a page, at most 3 index entries per queue a page
    pages = await _pages(limit=4, budget=3)
    runs = [r for page in pages for r in page]
    listed = [r.id for r in runs]
    # Then every waiting run is there once: by deadline, then the newest without one first
    assert listed[:9] == timed, listed
    assert sorted(listed[9:]) == sorted(untimed), listed
    newest_first = sorted(runs[9:], key=lambda r: (r.created, r.id), reverse=True)
    assert runs[9:] == newest_first
    assert all(len(page) <= 4 for page in pages)
    # And in one page when it fits
    [whole] = await _pages(limit=50, budget=1000)
    assert [r.id for r in whole] == listed


async def test_the_inbox_page_links_the_next_one(ui_server: UIServer, runtime_closed: None) -> None:
    ids = [await _waiting("inbox-p", 3_600_000 + i) for i in range(51)]
    async with httpx.AsyncClient(base_url=ui_server.url, timeout=30) as page:
        first = (await page.get("/inbox")).text
        assert first.count('class="inbox-row"') == 50 and ids[0] in first
        [after] = re.findall(r'id="next-page" href="/inbox\?after=([^"]+)"', first)
        second = (await page.get(f"/inbox/rows?after={after}")).text
    assert second.count('class="inbox-row"') == 1 and ids[-1] in second


async def test_runs_of_one_creation_time_beyond_a_page_budget_are_each_listed(
    runtime_closed: None,
) -> None:
    # Given more runs waiting for input without a deadline than a page's index budget, all
    # created in the same millisecond (their scores in the runs index tie)
    untimed = [await _waiting("inbox-t", None) for _ in range(7)]
    store = (await get_runtime()).store
    runs_index = store.keys.queue("inbox-t").runs()
    await store.redis.zadd(runs_index, dict.fromkeys(untimed, 1_800_000_000_000))
    # When the inbox is read 2 runs a page, at most 3 index entries per queue a page
    pages = await _pages(limit=2, budget=3)
    # Then every one is listed once, and the pages end
    listed = [r.id for page in pages for r in page]
    assert sorted(listed) == sorted(untimed) and len(listed) == len(set(listed))
