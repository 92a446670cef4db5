"""Given real worker processes, runs of deployed flows complete, survive crashes and bad input."""

from __future__ import annotations

import uuid
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus._redis.keys import Keys
from flowbus.flow_runs import await_for_flow_run
from tests.e2e.conftest import StartWorker
from tests.e2e.flows_module import key

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]


def qkeys(prefix: str, queue: str = "default") -> Any:
    return Keys(prefix).queue(queue)


async def test_deployed_flows_complete(start_worker: StartWorker, runtime_closed: None) -> None:
    # Given a worker and deployments of a sync and an async flow
    start_worker("w1")
    async with get_client() as client:
        sync_dep = await client.create_deployment("add", "d1")
        async_dep = await client.create_deployment("async-add", "d2")
        # When runs are created from the deployments
        sync_run = await client.create_flow_run_from_deployment(sync_dep, {"x": 2, "y": 3})
        async_run = await client.create_flow_run_from_deployment(async_dep, {"x": 4, "y": 5})
        # Then both complete with their results
        for run, expected in ((sync_run, 5), (async_run, 9)):
            done = await await_for_flow_run(run.id, timeout=90)
            assert done.state.type is StateType.COMPLETED, done.state
            assert await client.store.read_result(run.id) == expected


async def test_a_flow_no_live_worker_runs_fails_clearly(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given a worker that was not started with flow "mystery"
    worker = start_worker("w1", "--unknown-flow-timeout", "1")
    async with get_client() as client:
        dep = await client.create_deployment("mystery", "d")
        # When a run of it is enqueued and no worker with the flow shows up
        run = await client.create_flow_run_from_deployment(dep)
        done = await await_for_flow_run(run.id, timeout=90)
    # Then it fails, naming the queue, the flow and the live workers' flows
    assert done.state.type is StateType.FAILED
    message = done.state.message or ""
    assert "No live worker of queue 'default' runs flow 'mystery'" in message
    assert "w1: add, approval" in message
    # and the worker said so first, as a warning
    assert "WARNING" in worker.log() and "is not known to this worker" in worker.log()


async def test_malformed_entries_go_to_dead_letter(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given malformed entries in the queue stream
    keys = qkeys(flowbus_env)
    bad: list[dict[str, str]] = [
        {"foo": "bar"},
        {"run_id": "not-a-uuid"},
        {"run_id": str(uuid.uuid4()), "run_count": "1"},
    ]
    bad_ids = [await rclient.xadd(keys.stream(), fields) for fields in bad]  # type: ignore[arg-type]
    # When a worker serves the queue, and a good run follows them
    start_worker("w1")
    async with get_client() as client:
        dep = await client.create_deployment("add", "d")
        run = await client.create_flow_run_from_deployment(dep, {"x": 1, "y": 1})
        done = await await_for_flow_run(run.id, timeout=90)
    # Then the good run completes, the bad entries are dead letters, nothing stays pending
    assert done.state.type is StateType.COMPLETED
    dead = cast(list[tuple[str, dict[str, str]]], await rclient.xrange(keys.dead_letter()))
    assert len(dead) == 3
    # (entries are handled concurrently: match each dead letter to its source entry)
    by_source = {fields["source_id"]: fields for _id, fields in dead}
    first, second, third = (by_source[str(entry_id)] for entry_id in bad_ids)
    assert "no run_id" in first["reason"] and first["foo"] == "bar"
    assert "not a UUID" in second["reason"]
    assert "unknown run" in third["reason"]
    # (dead-lettering acknowledges in the same round trip)
    pending = await rclient.xpending_range(keys.stream(), "flowbus-workers", "-", "+", 10)
    assert not {item["message_id"] for item in pending} & set(bad_ids)


async def test_killed_worker_run_is_finished_by_another(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a run blocked in its second task on worker A
    worker_a = start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("long-running", "d")
        run = await client.create_flow_run_from_deployment(dep, {"tag": "k"})
    assert await rclient.blpop([key("started:k-gate")], timeout=90) is not None
    run_hash = qkeys(flowbus_env).run(run.id).run
    with anyio.fail_after(30):  # the first task's result is saved in the background
        # no event announces it, so this one wait polls
        while not await rclient.hexists(run_hash, "task:count-1"):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    # When A is killed and worker B starts
    worker_a.kill()
    start_worker("b")
    await rclient.rpush(key("open:k-gate"), "1")
    # Then B reclaims and completes the run, reusing the first task's result
    done = await await_for_flow_run(run.id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.run_count == 2
    assert await rclient.get(key("count:k-one")) == "1"
    assert await rclient.get(key("count:k-gate")) == "2"  # it crashed once mid-task
    assert await rclient.get(key("count:k-two")) == "1"
    # and, A's runs taken over, B leaves no trace of A: its beats and its consumers are gone
    workers = Keys(flowbus_env).workers()
    with anyio.fail_after(30):  # B forgets A at a reclaim round after the takeover
        while await rclient.hget(workers, "a") is not None:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    stream = qkeys(flowbus_env).stream()
    names = {c["name"] for c in await rclient.xinfo_consumers(stream, "flowbus-workers")}
    assert "a" not in names and "b" in names
    assert await rclient.hget(qkeys(flowbus_env).holders(), "a") is None
    assert await rclient.hget(Keys(flowbus_env).worker_info(), "a") is None
