"""Following one run: its history read, then its queue's events stream as the wake-up."""

from __future__ import annotations

import asyncio

import pytest

from flowbus._redis.runtime import get_runtime
from flowbus._redis.watch import follow, history
from flowbus.states import Completed, Pending, Running, StateType

pytestmark = pytest.mark.anyio

S = StateType


async def test_a_follower_sees_every_step_after_the_history_it_read(runtime_closed: None) -> None:
    # Given a run enqueued, and a follower that read its history
    runtime = await get_runtime()
    run = await runtime.store.create_run("flow-a", queue="followed", enqueue=True)
    [created] = await history(runtime, run.id)
    seen: list[tuple[StateType, str]] = []

    async def follower() -> None:
        async for event in follow(runtime, run.id, after=created.id):
            seen.append((event.type, event.from_type))

    following = asyncio.create_task(follower())
    # When a worker claims it (its PENDING step is recorded, not published) and it completes
    keys = await runtime.store.run_keys(run.id)
    assert (await runtime.store.scripts.claim_run(keys)).accepted
    assert (await runtime.store.set_state(run.id, Completed())).accepted
    # Then the follower got every step, that one too, in order, and stopped at the final one
    await asyncio.wait_for(following, 10)
    assert seen == [
        (S.PENDING, "SCHEDULED"),
        (S.RUNNING, "PENDING"),
        (S.COMPLETED, "RUNNING"),
    ]


async def test_a_follower_overtaken_by_the_streams_cap_misses_nothing(
    runtime_closed: None,
) -> None:
    # Given a run whose steps were published, then trimmed out of its queue's events stream
    # by a burst of other runs' events before its follower read them
    runtime = await get_runtime()
    run = await runtime.store.create_run("flow-b", queue="overtaken")
    [created] = await history(runtime, run.id)
    for kind in (Pending(), Running(), Completed()):
        assert (await runtime.store.set_state(run.id, kind)).accepted
    keys = await runtime.store.run_keys(run.id)
    pipe = runtime.redis.pipeline(transaction=False)
    for i in range(1500):
        pipe.xadd(keys.queue_events, {"run_id": f"other-{i}", "type": "RUNNING"})
    await pipe.execute()
    await runtime.redis.xtrim(keys.queue_events, maxlen=1200)
    # When it follows from the history it had read
    seen = [e.type async for e in follow(runtime, run.id, after=created.id)]
    # Then it still sees every step (read from the history), up to the final one
    assert seen == [S.PENDING, S.RUNNING, S.COMPLETED]
