"""Fencing: a worker taken for dead (stopped past its lease) cannot touch its run again once
another worker took it over; it stops at its next task boundary and says why."""

from __future__ import annotations

import json
import signal
from typing import Any
from uuid import UUID

import anyio
import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus._core.codec import decode
from flowbus._redis.keys import Keys, RunKeys
from flowbus._redis.records import task_results_of, unpack_state
from flowbus.flow_runs import await_for_flow_run
from tests.e2e.conftest import StartWorker
from tests.e2e.flows_module import key
from tests.e2e.support import WorkerProcess
from tests.redis_clients import async_redis

pytestmark = pytest.mark.anyio

#: The run hash, its task results and its history (raw replies).
Snapshot = tuple[Any, Any, Any]


async def snapshot(run_keys: RunKeys) -> Snapshot:
    """The run hash, its task results and its history, as stored."""
    client = async_redis()
    try:
        return (
            await client.hgetall(run_keys.run),
            task_results_of(await client.hgetall(run_keys.run)),
            await client.lrange(run_keys.history, 0, -1),
        )
    finally:
        await client.aclose()


async def blocked_on_its_gate(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, tag: str
) -> tuple[WorkerProcess, UUID, RunKeys]:
    """Worker A, running a fenced run blocked in its gate task (its first result saved)."""
    worker_a = start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("fenced-run", tag)
        run = await client.create_flow_run_from_deployment(dep, {"tag": tag})
    assert await rclient.blpop([key(f"started:{tag}-gate")], timeout=90) is not None
    run_keys = Keys(flowbus_env).queue("default").run(run.id)
    with anyio.fail_after(30):  # the first task's result is saved in the background
        while not await rclient.hexists(run_keys.run, "task:count-1"):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return worker_a, run.id, run_keys


async def stopped_without_changes(worker: WorkerProcess) -> None:
    with anyio.fail_after(60):
        while "stops without changing anything" not in worker.log():  # noqa: ASYNC110
            await anyio.sleep(0.1)


def assert_one_execution(state: Snapshot, winner: WorkerProcess) -> None:
    """The run as one execution (attempt 2, by ``winner``) left it."""
    fields, results, events = state
    assert unpack_state(fields[b"state"]).type == "COMPLETED" and fields[b"attempt"] == b"2"
    assert decode(fields[b"result"]) == f"done by {winner.proc.pid}"
    assert decode(results["whoami-1"]) == winner.proc.pid
    kinds = [json.loads(entry)["type"] for entry in events]
    assert kinds == ["SCHEDULED", "PENDING", "RUNNING", "SCHEDULED", "PENDING", "RUNNING"] + [
        "COMPLETED"
    ]


async def test_a_worker_stopped_past_its_lease_changes_nothing_after_the_takeover(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a run blocked in its second task on worker A
    worker_a, run_id, run_keys = await blocked_on_its_gate(start_worker, flowbus_env, rclient, "z")

    # When A is stopped past its lease, and worker B takes the run over and finishes it
    worker_a.proc.send_signal(signal.SIGSTOP)
    try:
        worker_b = start_worker("b")
        assert await rclient.blpop([key("started:z-gate")], timeout=90) is not None
        # each gate opened for its own process (A's is read once it goes on)
        await rclient.rpush(key(f"open:z-gate:{worker_a.proc.pid}"), "for-a")
        await rclient.rpush(key(f"open:z-gate:{worker_b.proc.pid}"), "for-b")
        done = await await_for_flow_run(run_id, timeout=90)
        assert done.state.type is StateType.COMPLETED, done.state
        settled = await snapshot(run_keys)
    finally:
        worker_a.proc.send_signal(signal.SIGCONT)

    # Then A, going on, learns it was superseded, stops and says so, changing nothing
    await stopped_without_changes(worker_a)
    after = await snapshot(run_keys)
    assert after == settled
    assert_one_execution(after, worker_b)
    assert await rclient.get(key("count:z-one")) == "1"  # reused by B, never run twice
    assert worker_a.proc.poll() is None  # nothing in it failed: it is still serving


async def test_a_worker_back_while_its_successor_runs_cannot_finish_the_run(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given run blocked in its gate on worker A, stopped past its lease and re-run by B
    worker_a, run_id, run_keys = await blocked_on_its_gate(start_worker, flowbus_env, rclient, "y")
    worker_a.proc.send_signal(signal.SIGSTOP)
    try:
        worker_b = start_worker("b")
        assert await rclient.blpop([key("started:y-gate")], timeout=90) is not None
    finally:
        worker_a.proc.send_signal(signal.SIGCONT)

    # When A comes back and its gate opens while B still runs (the run is RUNNING)
    await rclient.rpush(key(f"open:y-gate:{worker_a.proc.pid}"), "for-a")
    # Then A stops without writing its result or finishing the run
    await stopped_without_changes(worker_a)
    fields, results, _events = await snapshot(run_keys)
    assert unpack_state(fields[b"state"]).type == "RUNNING" and "whoami-1" not in results

    # and B finishes it: the run shows B's execution only
    await rclient.rpush(key(f"open:y-gate:{worker_b.proc.pid}"), "for-b")
    done = await await_for_flow_run(run_id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    assert_one_execution(await snapshot(run_keys), worker_b)
