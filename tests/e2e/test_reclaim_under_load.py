"""Orphans are recovered under load: a dead worker's runs take the next free slots of the
live workers ahead of new entries, even on a queue that never empties (real workers, kill -9).
"""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus._redis.keys import Keys
from flowbus.flow_runs import await_for_flow_run
from tests.e2e.conftest import StartWorker
from tests.e2e.flows_module import key

pytestmark = pytest.mark.anyio

#: Runs of the backlog: 0.1 s each on 2 slots, far more than a lease and a scan take.
BACKLOG = 150


async def test_an_orphan_re_runs_before_a_saturated_queue_drains(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given worker A running a run blocked in a task, and a backlog that saturates the workers
    worker_a = start_worker("a", "--concurrency", "2")
    async with get_client() as client:
        orphan_dep = await client.create_deployment("long-running", "orphan")
        busy_dep = await client.create_deployment("busy", "load")
        orphan = await client.create_flow_run_from_deployment(orphan_dep, {"tag": "o"})
        assert await rclient.blpop([key("started:o-gate")], timeout=90) is not None
        async with anyio.create_task_group() as tg:
            for _ in range(BACKLOG):
                tg.start_soon(client.create_flow_run_from_deployment, busy_dep, {})
    start_worker("b", "--concurrency", "2")

    # When A is killed
    worker_a.kill()

    # Then B re-runs the orphan while the backlog still waits: it did not wait for a free
    # moment that a saturated queue never has
    assert await rclient.blpop([key("started:o-gate")], timeout=60) is not None
    stream = Keys(flowbus_env).queue("default").stream()
    [group] = await rclient.xinfo_groups(stream)
    # entries never delivered yet: the group's lag, or (where the server cannot tell it after
    # the deletions of acknowledged entries, as Valkey) the stream beyond the entries in hand
    lag = group["lag"]
    waiting = lag if lag is not None else await rclient.xlen(stream) - group["pending"]
    assert waiting > 0, group
    await rclient.rpush(key("open:o-gate"), "1")
    done = await await_for_flow_run(orphan.id, timeout=90)
    assert done.state.type is StateType.COMPLETED and done.run_count == 2
