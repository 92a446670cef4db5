"""Task results are written in batches: soon after a task finishes, or with the final state."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from flowbus import FlowRunContext, flow, task
from flowbus._core.codec import decode
from flowbus._engine.results import BATCH_DELAY, ResultWriter
from flowbus._redis.runtime import close_runtime, get_runtime

pytestmark = pytest.mark.anyio


@task
async def double(x: int) -> int:
    return 2 * x


async def stored_results(run_id: str) -> dict[str, int]:
    store = (await get_runtime()).store
    return {k: decode(v) for k, v in (await store.load_task_results(run_id)).items()}


async def test_a_finished_task_is_durable_while_the_flow_still_runs(runtime_closed: None) -> None:
    seen: dict[str, int] = {}

    @flow
    async def slow() -> int:
        ctx = FlowRunContext.get()
        assert ctx is not None
        first: int = await double(1)
        await asyncio.sleep(0.3)  # well past the batching delay
        seen.update(await stored_results(str(ctx.flow_run.id)))
        return first

    assert await slow() == 2
    assert seen == {"double-1": 2}


async def test_quick_results_arrive_with_the_final_state(runtime_closed: None) -> None:
    run_ids: list[str] = []

    @flow
    async def quick() -> int:
        ctx = FlowRunContext.get()
        assert ctx is not None
        run_ids.append(str(ctx.flow_run.id))
        return sum([await double(i) for i in range(3)])

    assert await quick() == 6
    assert await stored_results(run_ids[0]) == {"double-1": 0, "double-2": 2, "double-3": 4}


def test_sync_tasks_in_threads_are_batched_too() -> None:
    @task
    def inc(x: int) -> int:
        return x + 1

    run_ids: list[str] = []

    @flow
    def fan_out() -> int:
        ctx = FlowRunContext.get()
        assert ctx is not None
        run_ids.append(str(ctx.flow_run.id))
        futures = [inc.submit(i) for i in range(10)]
        return sum(f.result() for f in futures)

    assert fan_out() == 55
    from flowbus._core.bridge import run_blocking

    assert len(run_blocking(stored_results, run_ids[0])) == 10


def test_a_delay_ending_while_the_run_finishes_leaves_its_results_to_the_final_state() -> None:
    # On uvloop (a worker's loop) due timers run before the callbacks of a loop turn: a turn
    # longer than the batching delay must not make the finishing run write its results alone
    async def finish() -> dict[str, bytes]:
        runtime = await get_runtime()
        try:
            run = await runtime.store.create_run("finishing")
            writer = ResultWriter(runtime.store, run.id, asyncio.get_running_loop())
            writer.persist("double-1", b"\x02")
            drained = asyncio.ensure_future(writer.drain())
            await asyncio.sleep(0)  # the drain began: it waits a turn for threads' results
            time.sleep(BATCH_DELAY * 2)  # noqa: ASYNC251 (a busy turn: the delay ends meanwhile)
            return await drained
        finally:
            await close_runtime()

    assert uvloop.run(finish()) == {"double-1": b"\x02"}
