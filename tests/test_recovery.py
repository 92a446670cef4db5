"""Redis crashes (kill -9, AOF fsync always): a paused run and its resume lose nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowbus import FlowRunContext, RunInput, StateType, flow, pause_flow_run
from flowbus.embedded import EmbeddedServer
from flowbus.flow_runs import aresume_flow_run
from flowbus.runtime import get_runtime
from flowbus.settings import get_settings

pytestmark = pytest.mark.anyio


class Approval(RunInput):
    approved: bool


@pytest.fixture
def crashable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedServer]:
    """A private server of this test's own, every write fsynced, that the test may kill."""
    server = EmbeddedServer(tmp_path / "redis", fsync_always=True)
    server.start()
    monkeypatch.setenv("FLOWBUS_REDIS_URL", server.url)
    get_settings.cache_clear()
    try:
        yield server
    finally:
        server.stop()


async def test_a_paused_run_survives_a_redis_crash_and_resumes(
    crashable: EmbeddedServer, runtime_closed: None
) -> None:
    # Given a run paused for input
    paused = asyncio.Event()
    ids: list[str] = []

    @flow
    async def approval() -> bool:
        ctx = FlowRunContext.get()
        assert ctx is not None
        ids.append(str(ctx.flow_run.id))
        paused.set()
        answer = await pause_flow_run(wait_for_input=Approval, timeout=120)
        return bool(answer.approved)

    running = asyncio.ensure_future(approval(return_state=True))
    await paused.wait()
    store = (await get_runtime()).store
    for _ in range(400):
        if (await store.read_run(ids[0])).state.is_paused():
            break
        await asyncio.sleep(0.01)
    # When Redis is killed and comes back from its append-only file
    crashable.kill()
    crashable.restart()
    # Then the run is still paused with its schema, a resume is accepted,
    # and the waiting flow (its blocking read reconnected) continues with the input
    assert (await store.read_run(ids[0])).state.type is StateType.PAUSED
    await aresume_flow_run(ids[0], {"approved": True})
    state = await asyncio.wait_for(running, timeout=30)
    assert state.is_completed() and state.result() is True
