"""``flowbus demo --ui`` when its page stops before the demo run is approved."""

from __future__ import annotations

import asyncio

import pytest

from flowbus.ui import demo

pytestmark = pytest.mark.anyio


async def test_a_page_that_fails_before_the_approval_is_named_and_the_demo_exits_1(
    monkeypatch: pytest.MonkeyPatch, runtime_closed: None
) -> None:
    async def failing_page(host: str, port: int) -> tuple[None, asyncio.Task[None]]:
        async def serve() -> None:
            await asyncio.sleep(0.5)  # the demo run is paused by then
            raise OSError("the listening socket was closed")

        return None, asyncio.ensure_future(serve())

    monkeypatch.setattr(demo, "start", failing_page)
    said: list[str] = []
    assert await demo.serve_demo("127.0.0.1", 0, said.append) == 1
    assert said[-1] == "the page stopped: the listening socket was closed"
