"""wait_for_flow_run and the wait multiplexer against a real Redis: final runs return at once,
others block until final; thousands of waiters share a few connections."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import tracemalloc
from functools import partial
from typing import Any
from uuid import uuid4

import anyio
import pytest

from flowbus import (
    Cancelled,
    Completed,
    Failed,
    FlowRun,
    Pending,
    Running,
    StateType,
    aresume_flow_run,
    flow,
    get_client,
    pause_flow_run,
    wait_for_flow_run,
)
from flowbus._core.bridge import background_loop, submit
from flowbus._redis.queue_indexes import read_runs
from flowbus._redis.runtime import get_runtime
from flowbus._redis.waiters import StreamWatcher, Subscription
from flowbus.exceptions import FlowRunNotFound, FlowRunWaitTimeout
from tests.redis_clients import async_redis, primaries
from tests.runs import (
    close_background_runtime,
    current_run_id,
    launch,
    store,
)

pytestmark = pytest.mark.anyio

CALLERS = ["sync", "async"]


async def wait_from(caller: str, run_id: Any, **options: Any) -> FlowRun:
    """wait_for_flow_run as async code awaits it, or as sync code calls it (blocking)."""
    if caller == "async":
        run: FlowRun = await wait_for_flow_run(run_id, **options)
        return run
    result: FlowRun = await anyio.to_thread.run_sync(partial(wait_for_flow_run, run_id, **options))
    return result


async def subscribed(caller: str, run_id: Any) -> None:
    """Wait (test-side) until the waiter of ``caller`` listens to the run's events: a sync
    waiter first opens a runtime on the background loop, which a loaded machine makes slow."""
    if caller == "async":
        runtime = await get_runtime()
    else:
        runtime = await asyncio.wrap_future(submit(background_loop(), get_runtime()))
    with anyio.fail_after(10):
        while True:
            if any(str(run_id) in w.subscribers for w in list(runtime.waiters.watchers.values())):
                return
            await asyncio.sleep(0.005)


async def new_run() -> FlowRun:
    async with get_client() as client:
        return await client.create_flow_run("waited-on")


async def move(run_id: Any, *states: Any) -> None:
    async with get_client() as client:
        for state in states:
            await client.set_flow_run_state(run_id, state)


# -- wait_for_flow_run ---------------------------------------------------------------------------


@pytest.mark.parametrize("caller", CALLERS)
async def test_a_final_run_is_returned_at_once(
    caller: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a cancelled run
    run = await new_run()
    await move(run.id, Cancelled())

    # When it is waited on
    started = time.monotonic()
    waited = await wait_from(caller, run.id)

    # Then it comes back at once, final
    assert time.monotonic() - started < 1
    assert (waited.id, waited.state.type) == (run.id, StateType.CANCELLED)


@pytest.mark.parametrize("caller", CALLERS)
async def test_waiting_blocks_until_the_run_is_final(
    caller: str, runtime_closed: None, background_closed: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a scheduled run and a waiter logging its states
    caplog.set_level(logging.INFO, logger="flowbus.flow_runs")
    run = await new_run()
    waiter = asyncio.ensure_future(wait_from(caller, run.id, log_states=True))
    await subscribed(caller, run.id)
    await asyncio.sleep(0.2)
    assert not waiter.done()

    # When it moves through non-final states, the waiter keeps waiting
    await move(run.id, Pending(), Running())
    await asyncio.sleep(0.1)
    assert not waiter.done()

    # Then it returns the run as soon as it completes
    await move(run.id, Completed())
    with anyio.fail_after(2):
        waited = await waiter
    assert waited.state.type is StateType.COMPLETED
    logged = caplog.text
    assert "is Running" in logged and "is Completed" in logged


@pytest.mark.parametrize("caller", CALLERS)
async def test_waiting_past_the_timeout_raises(
    caller: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a run that never finishes
    run = await new_run()

    # When it is waited on for 0.2 s
    # Then FlowRunWaitTimeout comes after 0.2 s (not before, not much later)
    started = time.monotonic()
    with pytest.raises(FlowRunWaitTimeout):
        await wait_from(caller, run.id, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 1.5


@pytest.mark.parametrize("caller", CALLERS)
async def test_waiting_on_an_unknown_run_raises(
    caller: str, runtime_closed: None, background_closed: None
) -> None:
    with pytest.raises(FlowRunNotFound):
        await wait_from(caller, uuid4())


async def test_a_thousand_concurrent_waits_all_return(runtime_closed: None) -> None:
    # Given 1,000 scheduled runs, each waited on by its own wait_for_flow_run
    runs = await asyncio.gather(*(new_run() for _ in range(1000)))
    waits = [asyncio.ensure_future(wait_for_flow_run(r.id, timeout=30)) for r in runs]
    await asyncio.sleep(0.2)
    assert not any(w.done() for w in waits)

    # When every run reaches a final state (half cancelled, half failed)
    finals = [Cancelled() if i % 2 else Failed() for i in range(len(runs))]
    await asyncio.gather(*(move(r.id, s) for r, s in zip(runs, finals, strict=True)))

    # Then every wait returns its run, final
    with anyio.fail_after(20):
        waited = await asyncio.gather(*waits)
    assert [w.id for w in waited] == [r.id for r in runs]
    assert [w.state.type for w in waited] == [s.type for s in finals]


# -- many paused runs, few connections -----------------------------------------------------------


def client_counts() -> list[int]:
    """Clients connected to the server (to each primary of a cluster)."""
    return [len(client.client_list()) for client in primaries()]


async def paused_count(flow_name: str) -> int:
    runs = await read_runs(
        await store(), flow_name=flow_name, state_types=[StateType.PAUSED], limit=100_000
    )
    return len(runs)


async def test_thousands_of_paused_runs_share_a_few_connections(runtime_closed: None) -> None:
    size = 2000
    await close_background_runtime()
    baseline = client_counts()
    ids: dict[int, str] = {}

    @flow(name="many")
    async def many(i: int) -> int:
        ids[i] = current_run_id()
        await pause_flow_run(timeout=60)
        return i

    # Given 2,000 async flows paused at once in this process
    handles = [launch(many, i) for i in range(size)]
    with anyio.fail_after(30):
        while True:
            if await paused_count("many") == size:
                break
            await asyncio.sleep(0.1)

    # Then this process holds at most 8 connections to Redis (to each node of a cluster)
    assert max(n - b for n, b in zip(client_counts(), baseline, strict=True)) <= 8

    # When one of them is resumed
    await aresume_flow_run(ids[0])

    # Then only that one continues; the others stay paused
    with anyio.fail_after(5):
        assert (await (await handles[0]).result()) == 0
    await asyncio.sleep(0.1)
    assert not any(h.done() for h in handles[1:])
    assert await paused_count("many") == size - 1

    # And cancelling the rest wakes each of them at once
    await asyncio.gather(*(move(ids[i], Cancelled()) for i in range(1, size)))
    with anyio.fail_after(20):
        states = await asyncio.gather(*handles[1:])
    assert {s.type for s in states} == {StateType.CANCELLED}


async def until_paused(flow_name: str, count: int) -> None:
    """Until ``count`` runs of ``flow_name`` are PAUSED and every waiter has taken the PAUSED
    event the watcher delivered it (so no event waits in a subscription)."""
    runtime = await get_runtime()
    control = runtime.store.keys.queue("default").control()
    with anyio.fail_after(60):
        while True:
            if await paused_count(flow_name) >= count:
                last: Any = await runtime.redis.xrevrange(control, count=1)
                if runtime.waiters.watchers[control].cursors[control] == last[0][0].decode():
                    break
            await asyncio.sleep(0.05)
    for _ in range(10):  # the waiters it woke take their events
        await asyncio.sleep(0)


async def pause_more_traced(name: str, size: int) -> tuple[int, int, tracemalloc.Snapshot]:
    """In a process that already holds 20 paused runs of a flow called ``name`` (its watcher
    and caches exist), pause ``size`` more with tracemalloc on: the traced memory before and
    once they are paused, and a snapshot then. Every run is cancelled before it returns."""

    @flow(name=name)
    async def paused() -> None:
        await pause_flow_run(timeout=60)

    warm, handles = [launch(paused) for _ in range(20)], list[asyncio.Task[Any]]()
    try:
        await until_paused(name, len(warm))
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            handles = [launch(paused) for _ in range(size)]
            await until_paused(name, len(warm) + size)
            gc.collect()  # what the polling above left in reference cycles
            return before, tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    finally:
        for handle in (*warm, *handles):
            handle.cancel()
        await asyncio.gather(*warm, *handles, return_exceptions=True)


async def test_a_paused_run_holds_few_python_objects(runtime_closed: None) -> None:
    # Given a process that already holds a few paused runs, when 500 more async flows pause in it
    size = 500
    before, after, _ = await pause_more_traced("light", size)

    # Then each holds at most 10 KiB of Python objects (its task and frames, its run record,
    # two subscriptions, no queue per subscription): 100,000 paused runs fit in a gigabyte
    per_run = (after - before) / size
    assert per_run <= 10 * 1024, f"{per_run:.0f} bytes per paused run"


async def test_the_lifecycle_lines_of_a_paused_run_keep_no_memory(
    runtime_closed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given run lifecycle lines logged at INFO (a script's default), to a handler that keeps none
    package = logging.getLogger("flowbus")
    monkeypatch.setattr(package, "level", logging.INFO)
    monkeypatch.setattr(package, "handlers", [logging.NullHandler()])
    monkeypatch.setattr(package, "propagate", False)

    # When 200 more runs are created, begin and pause, each line logged on the way
    size = 200
    _, _, snapshot = await pause_more_traced("logged", size)

    # Then logging holds nothing for them (looking up the file and line of a call made in a
    # coroutine builds the coroutine's frame object, which a paused run would then keep)
    by_logging = snapshot.filter_traces([tracemalloc.Filter(True, logging.__file__)])
    kept = sum(stat.size for stat in by_logging.statistics("filename")) / size
    assert kept < 16, f"{kept:.0f} bytes per paused run kept by logging"


# -- a watcher that falls behind a stream's cap --------------------------------------------------


async def watched_burst(burst: int, maxlen: int) -> list[Any]:
    """What a subscriber of one run receives when ``burst`` entries of other runs, capped at
    ``maxlen``, land on the stream between two reads of its watcher, the run's own first."""
    redis = async_redis(decode_responses=True)
    stream = f"watched:{uuid4()}"
    watcher = StreamWatcher(async_redis(), [stream], 60.0)
    sub = Subscription("mine")
    watcher.add(stream, sub)
    try:
        await redis.xadd(stream, {"run_id": "before"})
        await watcher.pin_cursors()
        await redis.xadd(stream, {"run_id": "mine", "type": "CANCELLED"})
        for start in range(0, burst, 500):
            pipe = redis.pipeline(transaction=False)
            for _ in range(min(500, burst - start)):
                pipe.xadd(stream, {"run_id": "other"}, maxlen=maxlen, approximate=True)
            await pipe.execute()
        watcher.task = asyncio.create_task(watcher.run())
        received: list[Any] = []
        with anyio.move_on_after(1):
            while True:
                received.append(await sub.next())
        return received
    finally:
        await watcher.stop()
        await watcher.redis.aclose()
        await redis.delete(stream)
        await redis.aclose()


async def test_a_burst_trimmed_before_it_was_read_makes_waiters_re_read() -> None:
    # Given a subscriber whose run's event is trimmed (capped stream) before its watcher reads
    received = await watched_burst(burst=3000, maxlen=1000)
    # Then it is told to re-read its run ("None") instead of waiting forever
    assert received == [None]


async def test_a_full_batch_with_nothing_trimmed_is_delivered_as_is() -> None:
    # Given a burst larger than a watcher's batch but within the stream's cap
    received = await watched_burst(burst=1500, maxlen=10_000)
    # Then the subscriber gets its event, and no re-read
    assert [(e.run_id, e.type) if e else e for e in received] == [("mine", StateType.CANCELLED)]
