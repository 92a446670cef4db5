"""A change made between a page's render and the opening of its event stream reaches the page:
the page names the hub's position when it was rendered, and the stream opened with it starts
with what the hub published since (on a cluster, a run's first moves often land in that gap)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from flowbus import Pending, Running, get_client
from tests.ui.support import UIServer

pytestmark = pytest.mark.anyio
#: Seconds the pushed events may take before the test fails.
WITHIN = 30.0


async def _message(lines: AsyncIterator[str]) -> tuple[str, dict[str, str]]:
    """The id and data of the next message of an event stream."""
    message_id = ""
    async for line in lines:
        if line.startswith("id: "):
            message_id = line.removeprefix("id: ")
        elif line.startswith("data: "):
            data: dict[str, str] = json.loads(line.removeprefix("data: "))
            return message_id, data
    raise AssertionError("the event stream ended")


@asynccontextmanager
async def _stream(
    browser: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[AsyncIterator[str]]:
    """The lines of an event stream opened at ``url``, once it said it is connected."""
    async with browser.stream("GET", url, headers=headers) as response:
        lines = response.aiter_lines()
        assert await anext(lines) == ": connected"
        yield lines


async def _data(lines: AsyncIterator[str]) -> dict[str, str]:
    """The data of the next message of an event stream."""
    return (await _message(lines))[1]


async def _id_of_change(lines: AsyncIterator[str], state_type: str) -> str:
    """The id of the stream's next message of a change to ``state_type`` (others skipped)."""
    with anyio.fail_after(WITHIN):
        while True:
            message_id, data = await _message(lines)
            if data.get("type") == state_type:
                return message_id


async def test_a_change_before_the_page_listens_reaches_it(
    ui_server: UIServer, runtime_closed: None
) -> None:
    async with (
        httpx.AsyncClient(base_url=ui_server.url, timeout=WITHIN) as browser,
        get_client() as client,
    ):
        # Given a run, and a page that listens already
        run = await client.create_flow_run("gap-flow")
        async with _stream(browser, "/events") as lines:
            # And the inbox rendered, its stream not open yet
            page = await browser.get("/inbox")
            found = re.search(r'sse-connect="([^"]+)"', page.text)
            assert found is not None, page.text
            stream_url = found.group(1).replace("&amp;", "&")
            # When the run changes before that stream opens (the hub has published it)
            await client.set_flow_run_state(run.id, Pending())
            await _id_of_change(lines, "PENDING")
        # Then the stream, once open, starts with that change
        async with _stream(browser, stream_url) as lines:
            with anyio.fail_after(WITHIN):
                assert await _data(lines) == {"run_id": str(run.id), "type": "PENDING"}


async def test_a_position_of_another_server_has_the_page_re_read(
    ui_server: UIServer, runtime_closed: None
) -> None:
    # Given a page rendered by a server that is gone (restarted: its position names another)
    async with (
        httpx.AsyncClient(base_url=ui_server.url, timeout=WITHIN) as browser,
        _stream(browser, "/events?since=0badc0de-7") as lines,
    ):
        # Then its stream starts with "re-read everything"
        with anyio.fail_after(WITHIN):
            assert await _data(lines) == {}


async def test_a_reopened_stream_starts_after_the_last_message_it_got(
    ui_server: UIServer, runtime_closed: None
) -> None:
    async with (
        httpx.AsyncClient(base_url=ui_server.url, timeout=WITHIN) as browser,
        get_client() as client,
    ):
        # Given a page's stream that got the message of a run's first change
        run = await client.create_flow_run("reopen-flow")
        async with _stream(browser, "/events") as lines:
            await client.set_flow_run_state(run.id, Pending())
            last_id = await _id_of_change(lines, "PENDING")
            # And a second change published while the stream is being reopened
            await client.set_flow_run_state(run.id, Running())
            await _id_of_change(lines, "RUNNING")
        # When the browser reopens it as EventSource does (the page's position, its last id)
        headers = {"Last-Event-ID": last_id}
        async with _stream(browser, "/events?since=0badc0de-7", headers=headers) as lines:
            # Then it starts with the change after that message, not with a re-read
            with anyio.fail_after(WITHIN):
                assert await _data(lines) == {"run_id": str(run.id), "type": "RUNNING"}
