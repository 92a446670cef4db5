"""Sweeping the runs of a gone holder, at the store level (real server, no worker)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from flowbus._redis.orphans import end_orphans
from flowbus._redis.runtime import get_runtime
from flowbus.flow_runs import aresume_flow_run
from flowbus.states import StateType

pytestmark = pytest.mark.anyio


async def test_a_gone_holders_deployed_pause_becomes_a_suspension_a_resume_enqueues(
    runtime_closed: None,
) -> None:
    # Given a deployed run this process started and paused in-process
    store = (await get_runtime()).store
    run = await store.create_run("flow-a", deployment_id=uuid4(), start=True)
    keys = await store.run_keys(run.id)
    paused = await store.scripts.pause(
        keys, key="1", timeout_ms=None, reschedule=False, state_name="Paused"
    )
    assert paused.accepted
    # When its holder is a process whose lease has ended (as if it died) and a sweeper runs
    # (named apart from this process, whose heartbeat would renew its own lease meanwhile)
    await store.redis.hset(keys.run, "holder", "someone-gone")
    await store.redis.hset(keys.holders, "someone-gone", 1)
    assert await end_orphans(store, "default") == 1

    # Then the pause is a suspension, nothing is held, and a resume hands it to the workers
    suspended = await store.read_run(run.id)
    assert (suspended.state.type, suspended.state.name) == (StateType.PAUSED, "Suspended")
    assert await store.redis.scard(keys.held) == 0
    await aresume_flow_run(run.id)
    resumed = await store.read_run(run.id)
    assert (resumed.state.type, resumed.state.name) == (StateType.SCHEDULED, "Resuming")
    assert await store.redis.xlen(keys.queue_stream) == 1


async def test_runs_of_a_live_holder_are_left_alone(runtime_closed: None) -> None:
    store = (await get_runtime()).store
    run = await store.create_run("flow-a", start=True)
    keys = await store.run_keys(run.id)
    await store.redis.hset(keys.holders, "someone-gone", 1)

    assert await end_orphans(store, "default") == 0

    assert (await store.read_run(run.id)).state.type is StateType.RUNNING
    assert await store.redis.sismember(keys.held, str(run.id))
    assert await store.redis.hget(keys.holders, "someone-gone") is None
