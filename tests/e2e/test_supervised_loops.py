"""Given a real worker, a stream or key of the wrong type stops none of its loops for good."""

from __future__ import annotations

import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus._redis.keys import Keys
from flowbus.flow_runs import await_for_flow_run
from tests.e2e.conftest import StartWorker
from tests.e2e.support import wait_for_log

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]


async def replace_with_string(client: aredis.Redis, key: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.set(key, "not a stream")
    await pipe.execute()


async def test_readers_and_sweeper_meeting_wrongtype_start_again(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a worker serving a queue
    keys = Keys(flowbus_env).queue("default")
    worker = start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("add", "d")
        first = await client.create_flow_run_from_deployment(dep, {"x": 1, "y": 1})
        assert (await await_for_flow_run(first.id, timeout=60)).state.type is StateType.COMPLETED
        # When its queue stream, its resume-request stream and its deadline set become strings
        for key in (keys.stream(), keys.resume_requests(), keys.deadlines()):
            await replace_with_string(rclient, key)
        wake = {"run_id": "x", "type": "PAUSED", "deadline": "1"}
        await rclient.xadd(keys.control(), wake)  # type: ignore[arg-type]  # wakes the sweeper
        for loop in (f"Reader of {keys.stream()}", f"Reader of {keys.resume_requests()}"):
            await wait_for_log(worker, f"{loop} failed")
        await wait_for_log(worker, "Deadline sweeper of default failed")
        # and are repaired
        await rclient.delete(keys.stream(), keys.resume_requests(), keys.deadlines())
        # Then the worker lives on and runs what comes next
        later = await client.create_flow_run_from_deployment(dep, {"x": 2, "y": 2})
        done = await await_for_flow_run(later.id, timeout=60)
    assert done.state.type is StateType.COMPLETED
    assert worker.proc.poll() is None
