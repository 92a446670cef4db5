"""Redis crashes (kill -9, AOF fsync always): a paused run and its resume lose nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowbus import FlowRunContext, RunInput, StateType, flow, pause_flow_run
from flowbus._redis.embedded import EmbeddedServer
from flowbus._redis.runtime import get_runtime, open_redis
from flowbus._redis.store import RunStore
from flowbus.flow_runs import aresume_flow_run
from flowbus.settings import get_settings
from flowbus.states import State
from tests.conftest import own_servers

pytestmark = [pytest.mark.anyio, own_servers]


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
    assert state.is_completed() and (await state.result()) is True


class ReplyDropper:
    """A TCP proxy to Redis that, when armed, forwards the next request and then cuts the
    connection instead of passing Redis's reply back: the command ran, its caller never
    learns how. redis-py then sends it again on a new connection."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.armed = False
        self.dropped = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            while data := await src.read(65536):
                if replies and self.armed:
                    self.armed = False
                    self.dropped += 1
                    break
                dst.write(data)
                await dst.drain()
            client_w.close()
            server_w.close()

        await asyncio.gather(
            pump(client_r, server_w, replies=False),
            pump(server_r, client_w, replies=True),
            return_exceptions=True,
        )

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_transition_whose_reply_was_lost_reports_what_happened(
    plain_server: EmbeddedServer,
) -> None:
    # Given a store whose connection to Redis drops after a command ran, before its reply
    host, port = plain_server.url.removeprefix("redis://").split("/")[0].split(":")
    proxy = ReplyDropper(host, int(port))
    settings = get_settings()
    redis = open_redis(await proxy.start(), settings)
    store = RunStore(redis, settings)
    try:
        run = await store.create_run("flow-a")
        # When a move's reply is lost and redis-py sends the move again on a new connection
        proxy.armed = True
        reply = await store.set_state(run.id, State(type=StateType.PENDING, name="Pending"))
        # Then the caller is told the move happened (not refused by the state it made), and
        # the run moved once
        assert proxy.dropped == 1
        assert reply.accepted, reply.detail
        history: Any = await redis.lrange((await store.run_keys(run.id)).history, 0, -1)
        assert [json.loads(e)["type"] for e in history] == ["SCHEDULED", "PENDING"]
    finally:
        await redis.aclose()
        await redis.connection_pool.aclose()
        await proxy.aclose()
