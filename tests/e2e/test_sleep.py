"""Given a real worker, a durable sleep leaves the worker and the sweeper re-runs it on time."""

from __future__ import annotations

import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus.flow_runs import await_for_flow_run
from tests.e2e.conftest import StartWorker
from tests.e2e.flows_module import key
from tests.e2e.support import is_suspended, wait_for_run

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]


async def test_sleep_for_suspends_the_run_and_the_sweeper_resumes_it(
    start_worker: StartWorker, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a deployed flow that sleeps 1 s between two tasks, and a worker
    start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("sleeper", "d")
        run = await client.create_flow_run_from_deployment(dep, {"seconds": 1.0, "tag": "z"})

    # When it sleeps, it is Suspended (no process holds it) until its time
    suspended = await wait_for_run(run.id, is_suspended, within=90)
    wake_at = suspended.state.state_details.pause_timeout
    assert wake_at is not None

    # Then the worker's sweeper re-enqueues it then, and the re-run goes on past the sleep,
    # each task run once
    done = await await_for_flow_run(run.id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.run_count == 2
    assert await rclient.get(key("count:z-before")) == "1"
    assert await rclient.get(key("count:z-after")) == "1"
