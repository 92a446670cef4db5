"""A Redis Cluster primary killed (SIGKILL) and its replica promoted: runs paused, running and
queued all finish, waiters wake, workers keep serving.

The cluster is this module's own (3 primaries with a replica each, a short node timeout), so
these tests run whether or not the session's server is a cluster. Each test fails over a
shard that still has a replica; killed nodes are started again (as replicas) when none has.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest
import redis

from flowbus import Cancelled, StateType, flow, get_client, pause_flow_run
from flowbus._redis.connect import close_client, open_client
from flowbus._redis.embedded import EmbeddedServer
from flowbus._redis.keys import Keys
from flowbus._redis.local_cluster import LocalCluster
from flowbus.flow_runs import await_for_flow_run
from flowbus.settings import get_settings
from tests.conftest import env_for_subprocess
from tests.e2e.flows_module import key
from tests.e2e.support import (
    WorkerProcess,
    dump_logs,
    is_suspended,
    spawn_worker,
    wait_for_log,
    wait_for_run,
)
from tests.redis_clients import sync_redis
from tests.runs import current_run_id, launch, wait_for_ids, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(120)]

#: How long a node may be unreachable before it is judged failed (the failover starts).
NODE_TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    data = tmp_path_factory.mktemp("failover")
    with LocalCluster(data, masters=3, replicas=1, node_timeout_ms=NODE_TIMEOUT_MS) as started:
        yield started


@pytest.fixture
def on_cluster(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> LocalCluster:
    """Point flowbus at the module's cluster (the key prefix stays the test's own)."""
    monkeypatch.setenv("FLOWBUS_REDIS_URL", cluster.url)
    get_settings.cache_clear()
    return cluster


def shard_to_fail(cluster: LocalCluster, stream: str) -> None:
    """Make sure the primary of ``stream`` has a replica to promote."""
    if cluster.primary_for(stream) not in cluster.replicated():
        cluster.revive()


def queues_apart(
    cluster: LocalCluster, prefix: str, count: int, *, apart: bool = True
) -> list[str]:
    """Queues of one shard that can fail over and (``apart``) serves none of the test's own
    keys (the gates and counters flows use), so the test sees the failover of its queues alone."""
    for _attempt in range(2):
        mine = {cluster.primary_for(key("gate")).port} if apart else set()  # one hash tag
        shards: dict[int, list[str]] = {}
        for node in cluster.replicated():
            if node.port not in mine:
                shards[node.port] = []
        for n in range(2000):
            queue = f"fo{n}"
            port = cluster.primary_for(Keys(prefix).queue(queue).control()).port
            if port in shards:
                shards[port].append(queue)
                if len(shards[port]) == count:
                    return shards[port]
        cluster.revive()  # every shard apart has failed over already
    raise AssertionError("no shard apart from the test's keys")


async def test_a_paused_run_resumes_after_its_primary_dies(
    on_cluster: LocalCluster, flowbus_env: str, runtime_closed: None
) -> None:
    # Given a run paused in this process, and a second waiter on it
    control = Keys(flowbus_env).queue("default").control()
    shard_to_fail(on_cluster, control)
    ids: list[str] = []

    @flow
    async def paused() -> str:
        ids.append(current_run_id())
        await pause_flow_run(timeout=120, key="approval")
        return "resumed"

    state = launch(paused)
    (run_id,) = await wait_for_ids(ids, 1)
    run = await wait_until(run_id, StateType.PAUSED)
    waiter = asyncio.ensure_future(await_for_flow_run(run.id, timeout=90))
    # When the primary of its queue is killed once its replica has the run (what a replica
    # never received is lost: see test_changes_a_replica_never_received_are_lost_with_its_primary),
    # and its replica promoted
    in_sync(on_cluster.primary_for(control))
    on_cluster.fail_over(control)
    promoted = on_cluster.primary_for(control)
    with redis.Redis(port=promoted.port, password=promoted.password) as direct:
        direct.script_flush()  # a promoted replica may lack the scripts
    # Then a resume is accepted, the paused flow wakes and finishes, and the waiter wakes
    async with get_client() as client:
        await client.resume_flow_run(run.id)
    assert (await asyncio.wait_for(state, 60)).type is StateType.COMPLETED
    assert (await asyncio.wait_for(waiter, 60)).state.type is StateType.COMPLETED


async def test_workers_keep_serving_after_their_queues_fail_over(
    on_cluster: LocalCluster, flowbus_env: str, tmp_path: Path, runtime_closed: None
) -> None:
    # Given two queues of one shard: on the first a worker with one slot, running a run
    # (held in a task) with runs queued behind it and a run suspended for input; on the
    # second a worker blocked reading it
    busy, idle = queues_apart(on_cluster, flowbus_env, 2)
    env = env_for_subprocess(on_cluster.url, flowbus_env)
    # leases longer than the failover: the workers' runs are not taken for orphans meanwhile
    workers = [
        spawn_worker(env, tmp_path, "w1", "--lease", "10", "--concurrency", "1", queue=busy),
        spawn_worker(env, tmp_path, "w2", "--lease", "10", queue=idle),
    ]
    try:
        await _serve_through_failover(on_cluster, flowbus_env, busy, idle, workers)
    except BaseException:
        dump_logs(workers)
        raise
    finally:
        for worker in workers:
            worker.ensure_stopped()


async def _serve_through_failover(
    cluster: LocalCluster, prefix: str, busy: str, idle: str, workers: list[WorkerProcess]
) -> None:
    gates = sync_redis()
    async with get_client() as client:
        suspending = await client.create_deployment("approval", "s", queue=busy)
        running = await client.create_deployment("long-running", "r", queue=busy)
        adding = await client.create_deployment("add", "a", queue=busy)
        adding_idle = await client.create_deployment("add", "b", queue=idle)
        suspended = await client.create_flow_run_from_deployment(suspending, {"tag": "s"})
        await wait_for_run(suspended.id, is_suspended)
        gated = await client.create_flow_run_from_deployment(running, {"tag": "x"})
        assert gates.blpop([key("started:x-gate")], timeout=60) is not None
        queued = [
            await client.create_flow_run_from_deployment(adding, {"x": i, "y": 1}) for i in range(3)
        ]
        await wait_for_log(workers[1], "Worker w2 ready")
        # When the queues' primary is killed once its replica has these runs, and its replica
        # promoted (what a replica never received is lost with its primary: tested below)
        in_sync(cluster.primary_for(Keys(prefix).queue(busy).control()))
        cluster.fail_over(Keys(prefix).queue(busy).control())
        # Then the blocked worker serves new runs, the running run finishes once its task
        # does, the queued runs run after it, the suspended run resumes on a worker
        later = [
            await client.create_flow_run_from_deployment(adding_idle, {"x": i, "y": 10})
            for i in range(3)
        ]
        gates.rpush(key("open:x-gate"), "1")
        await client.resume_flow_run(suspended.id, {"approved": True, "note": "after"})
        for run in [*later, gated, *queued, suspended]:
            done = await await_for_flow_run(run.id, timeout=60)
            assert done.state.type is StateType.COMPLETED, (run.name, done.state)
        results = [await client.store.read_result(r.id) for r in [*queued, *later]]
    assert results == [1, 2, 3, 10, 11, 12]
    # and both workers are still serving
    assert all(worker.proc.poll() is None for worker in workers)
    gates.close()


# -- the loss window --------------------------------------------------------------------------


async def test_changes_a_replica_never_received_are_lost_with_its_primary(
    on_cluster: LocalCluster, flowbus_env: str, runtime_closed: None
) -> None:
    # Given runs waiting in a queue (no worker), created while the replica was in sync
    (queue,) = queues_apart(on_cluster, flowbus_env, 1, apart=False)
    control = Keys(flowbus_env).queue(queue).control()
    runs = await waiting_runs(queue, 3)
    primary = on_cluster.primary_for(control)
    in_sync(primary)
    # When the primary acknowledges cancels its replica never receives (the replica is
    # stopped, its link cut), then dies, and the replica is promoted
    replica = on_cluster.replica_of(primary).pid
    assert replica is not None
    os.kill(replica, signal.SIGSTOP)
    try:
        with redis.Redis(port=primary.port, password=primary.password) as direct:
            direct.client_kill_filter(_type="replica")
        async with get_client() as client:
            for run_id in runs:
                await client.set_flow_run_state(run_id, Cancelled())
        primary.kill()
    finally:
        os.kill(replica, signal.SIGCONT)
    on_cluster.wait_promoted(control, primary)
    # Then exactly those acknowledged cancels are lost: the runs are waiting again
    assert [await _state(r) for r in runs] == [StateType.SCHEDULED] * 3


async def test_waiting_for_a_replica_keeps_final_states_through_a_failover(
    on_cluster: LocalCluster,
    flowbus_env: str,
    monkeypatch: pytest.MonkeyPatch,
    runtime_closed: None,
) -> None:
    # Given flowbus told to wait for one replica after each final transition, and runs
    monkeypatch.setenv("FLOWBUS_CLUSTER_WAIT_REPLICAS", "1")
    monkeypatch.setenv("FLOWBUS_CLUSTER_WAIT_TIMEOUT_MS", "10000")
    get_settings.cache_clear()
    (queue,) = queues_apart(on_cluster, flowbus_env, 1, apart=False)
    control = Keys(flowbus_env).queue(queue).control()
    runs = await waiting_runs(queue, 3)
    primary = on_cluster.primary_for(control)
    replica = on_cluster.replica_of(primary).pid
    assert replica is not None
    # When each is cancelled while the replica is stopped for a moment
    for run_id in runs:
        before = offsets(primary)[0]
        os.kill(replica, signal.SIGSTOP)
        threading.Timer(0.3, os.kill, (replica, signal.SIGCONT)).start()
        async with get_client() as client:
            await client.set_flow_run_state(run_id, Cancelled())
        # Then each returns only once the replica acknowledged it (the replica acknowledges
        # by itself once a second, and was stopped until after the call without WAIT)
        assert min(offsets(primary)[1]) > before
    # and when the primary dies at once after the last one, none is lost
    primary.kill()
    on_cluster.wait_promoted(control, primary)
    assert [await _state(r) for r in runs] == [StateType.CANCELLED] * 3


async def waiting_runs(queue: str, count: int) -> list[UUID]:
    async with get_client() as client:
        dep = await client.create_deployment("add", "d", queue=queue)
        return [(await client.create_flow_run_from_deployment(dep)).id for _ in range(count)]


async def _state(run_id: UUID) -> StateType:
    async with get_client() as client:
        return (await client.read_flow_run(run_id)).state.type


def offsets(primary: EmbeddedServer) -> tuple[int, list[int]]:
    """The replication offset of ``primary``, and the last one each replica acknowledged."""
    with redis.Redis(port=primary.port, password=primary.password) as client:
        info = client.info("replication")
    acked = [int(v["offset"]) for k, v in info.items() if k.startswith("slave")]
    return int(info["master_repl_offset"]), acked


def in_sync(primary: EmbeddedServer) -> None:
    """Wait until the replicas of ``primary`` have everything it has (replication offsets)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        offset, acked = offsets(primary)
        if acked and min(acked) >= offset:
            return
        time.sleep(0.01)  # replication announces nothing: its offsets are read
    raise AssertionError(f"the replicas of {primary.port} did not catch up")


# -- connection caps -------------------------------------------------------------------------


async def test_callers_beyond_a_nodes_connections_wait_for_one(on_cluster: LocalCluster) -> None:
    # Given a cluster client allowed 2 connections per node, its slot map read
    client = open_client(on_cluster.url, max_connections=2, connect_timeout=5)
    await client.ping()
    keys = [f"cap:{{{n}}}" for n in range(30)]  # spread over every node

    async def piped(key: str) -> list[object]:
        pipe = client.pipeline(transaction=False)
        for _ in range(3):
            pipe.incr(key)
        result: list[object] = await pipe.execute()
        return result

    try:
        # When far more single commands and pipelines than that are made at once
        singles = [client.incr(key) for key in keys * 10]
        pipelines = [piped(key) for key in keys * 3]
        await asyncio.gather(*singles, *pipelines)
        # Then every one waited for a connection (no MaxConnectionsError) and counted once
        counts = [int(cast(bytes, await client.get(key))) for key in keys]
        assert counts == [10 + 3 * 3] * len(keys)
        for node in cast(Any, client).get_nodes():
            assert len(node._connections) <= 2  # never more than the cap
    finally:
        await close_client(client)
