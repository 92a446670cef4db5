"""Background tasks survive what Redis throws at them: a key of the wrong type, a missing
permission, a malformed entry. Each is made real on the test's server (no mocks)."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator

import anyio
import pytest
import redis
from redis.asyncio import Redis

from flowbus import Cancelled, flow, task, wait_for_flow_run
from flowbus._redis.runtime import close_runtime, get_runtime
from flowbus.settings import get_settings
from flowbus.states import StateType
from tests.conftest import TestServer
from tests.redis_clients import as_user, primaries, sync_redis

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def quick_recheck(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Watchers re-block every 0.2 s, so a key replaced under a blocked read is met soon."""
    monkeypatch.setenv("FLOWBUS_RECHECK_INTERVAL", "0.2")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class Logged(logging.Handler):
    """Sets an event once a supervisor logs a message starting with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.seen.set()

    async def wait(self) -> None:
        assert await anyio.to_thread.run_sync(self.seen.wait, 20), f"never logged: {self.prefix}"


@contextlib.contextmanager
def logged(prefix: str) -> Iterator[Logged]:
    handler = Logged(prefix)
    log = logging.getLogger("flowbus.supervisor")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


async def replace_with_string(redis: Redis, key: str) -> None:
    pipe = redis.pipeline(transaction=True)
    pipe.delete(key)
    pipe.set(key, "not a stream")
    await pipe.execute()


async def test_a_watcher_meeting_wrongtype_keeps_serving_later_waiters(
    quick_recheck: None, runtime_closed: None
) -> None:
    # Given a waiter on a run, its watcher reading the queue's events stream
    runtime = await get_runtime()
    store = runtime.store
    run = await store.create_run("watched")
    events = store.keys.queue("default").events()
    async with runtime.waiters.subscribe("default", str(run.id)) as sub:
        watcher = runtime.waiters.watchers[events]
        # When the stream becomes a string: every read fails with WRONGTYPE
        with logged(f"Watcher of {events} failed") as failed:
            await replace_with_string(runtime.redis, events)
            await failed.wait()
        # Then the watcher lives on, and tells its waiters to re-read their runs
        with anyio.fail_after(20):
            assert await sub.next() is None
        assert watcher.task is not None and not watcher.task.done()
    await runtime.redis.delete(events)
    # and once the stream is back, a run's end reaches a waiter
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.set_state, run.id, Cancelled())
        finished = await wait_for_flow_run(run.id, timeout=30)
    assert finished.state.type is StateType.CANCELLED
    # and a later waiter on the same stream is served too
    later = await store.create_run("watched")
    async with anyio.create_task_group() as tg:

        async def finish() -> None:
            await anyio.wait_all_tasks_blocked()
            await store.set_state(later.id, Cancelled())

        tg.start_soon(finish)
        finished = await wait_for_flow_run(later.id, timeout=30)
    assert finished.state.type is StateType.CANCELLED


async def test_a_watcher_without_read_permission_still_wakes_its_waiters(
    redis_server: TestServer,
    monkeypatch: pytest.MonkeyPatch,
    quick_recheck: None,
    runtime_closed: None,
) -> None:
    # Given an ACL user that may do everything but XREAD
    user, password = f"nox{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    for admin in primaries(redis_server.url):  # ACL users are per node
        admin.acl_setuser(
            user,
            enabled=True,
            passwords=[f"+{password}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-xread"],
        )
    monkeypatch.setenv("FLOWBUS_REDIS_URL", as_user(redis_server.url, user, password))
    get_settings.cache_clear()
    try:
        runtime = await get_runtime()
        run = await runtime.store.create_run("unreadable")
        # When a process waits on a run and it ends (every watcher read is refused: NOPERM)
        async with anyio.create_task_group() as tg:

            async def finish() -> None:
                await anyio.wait_all_tasks_blocked()
                await runtime.store.set_state(run.id, Cancelled())

            tg.start_soon(finish)
            finished = await wait_for_flow_run(run.id, timeout=30)
        # Then the waiter learns it anyway: the failing watcher has its waiters re-read
        assert finished.state.type is StateType.CANCELLED
    finally:
        await close_runtime()
        for admin in primaries(redis_server.url):
            admin.acl_deluser(user)


async def test_malformed_events_do_not_end_a_waiter(runtime_closed: None) -> None:
    # Given a waiter on a run
    runtime = await get_runtime()
    store = runtime.store
    run = await store.create_run("forged")
    events = store.keys.queue("default").events()
    async with anyio.create_task_group() as tg:

        async def forge_then_finish() -> None:
            await anyio.wait_all_tasks_blocked()
            # When the stream gets entries no reader expects, some naming the run
            for fields in (
                {"run_id": str(run.id), "type": "COMPLETED", "ts": "soon", "run_count": "x"},
                {"run_id": str(run.id), "type": "NOT-A-STATE"},
                {"run_id": b"\xff\xfe", "deadline": b"\xff"},
                {"nothing": ""},
            ):
                await runtime.redis.xadd(events, fields)  # type: ignore[arg-type]
            await store.set_state(run.id, Cancelled())

        tg.start_soon(forge_then_finish)
        finished = await wait_for_flow_run(run.id, timeout=30)
    # Then it returns the run's real end
    assert finished.state.type is StateType.CANCELLED


def _refuse_writes(refused: bool) -> None:
    """Make Redis refuse every write (out of memory, under ``noeviction``), or accept again."""
    client = sync_redis()
    try:
        if isinstance(client, redis.RedisCluster):  # every node: the run's is one of them
            client.config_set("maxmemory", 1 if refused else 0, target_nodes=client.ALL_NODES)
        else:
            client.config_set("maxmemory", 1 if refused else 0)
    finally:
        client.close()


@task
def refuse_redis_writes() -> int:
    _refuse_writes(True)
    return 1


#: Set once the background write of the first result failed (the flow's tasks wait on it).
WRITE_FAILED: list[threading.Event] = []


@task
def accept_redis_writes() -> int:
    # the batched write of the first result fails (OOM) in the background meanwhile
    try:
        assert WRITE_FAILED[-1].wait(20), "the background write never failed"
    finally:
        _refuse_writes(False)
    return 2


@flow
def results_meet_a_refusal() -> int:
    return refuse_redis_writes() + accept_redis_writes()


async def test_a_failed_background_result_write_is_logged_and_written_later(
    runtime_closed: None,
) -> None:
    # Given a flow whose Redis refuses writes while its first result is written
    with logged("Background task results of run") as failed:
        WRITE_FAILED.append(failed.seen)
        state = await anyio.to_thread.run_sync(lambda: results_meet_a_refusal(return_state=True))
    # Then the failure was logged, the flow completed, and both results were persisted
    assert state.is_completed(), state
    runtime = await get_runtime()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert sorted(await runtime.store.load_task_results(run_id)) == [
        "accept_redis_writes-1",
        "refuse_redis_writes-1",
    ]
