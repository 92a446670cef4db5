"""The page follows a queue born after it started, at once (no page load needed): it reads
the queues' announcements with a blocking read, then the new queue's events."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from flowbus import Pending, get_client
from tests.ui.support import UIServer

pytestmark = pytest.mark.anyio
#: Seconds the pushed events may take before the test fails.
WITHIN = 30.0


async def test_a_queue_born_later_is_followed_live(
    ui_server: UIServer, runtime_closed: None
) -> None:
    async with (
        httpx.AsyncClient(base_url=ui_server.url, timeout=WITHIN) as page,
        page.stream("GET", "/events") as pushed,
    ):
        lines = pushed.aiter_lines()
        assert await anext(lines) == ": connected"
        # When a run is created on a queue nobody used before, and then changes state
        async with get_client() as client:
            run = await client.create_flow_run("late-flow", queue="born-later")
            seen: list[dict[str, str]] = []
            with anyio.fail_after(WITHIN):
                async for line in lines:
                    if not line.startswith("data: "):
                        continue
                    seen.append(json.loads(line.removeprefix("data: ")))
                    if seen[-1] == {} and len(seen) == 1:  # followed: pages re-read
                        await client.set_flow_run_state(run.id, Pending())
                    if seen[-1].get("type") == "PENDING":
                        break
    # Then the page was told to re-read once the queue was followed, then got its events
    assert seen[0] == {}, seen
    assert seen[-1] == {"run_id": str(run.id), "type": "PENDING"}, seen
