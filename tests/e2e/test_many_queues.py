"""Given a worker serving many queues, idle ones cost it nothing per queue and starve nothing."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus.flow_runs import await_for_flow_run
from tests.conftest import on_cluster
from tests.e2e.conftest import StartWorker
from tests.e2e.support import WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]

#: Counts of one server's connections and commands (a cluster worker blocks per hash slot).
one_server = pytest.mark.skipif(on_cluster(), reason="counts one server's clients")

#: What a worker blocks on, whatever its queues: runs, resume requests, control events.
BLOCKING_PER_WORKER = 3
#: Commands reading a stream: the last command of every connection blocked on one.
BLOCKING_COMMANDS = {"xread", "xreadgroup"}


def queue_args(queues: list[str]) -> list[str]:
    return [arg for queue in queues for arg in ("--queue", queue)]


def many(count: int, label: str) -> list[str]:
    return [f"{label}-{i}" for i in range(count)]


async def others(rclient: aredis.Redis, before: set[int]) -> list[dict[str, Any]]:
    """Every connection of the server but this client's own and those already there."""
    me = await rclient.client_id()
    clients: list[dict[str, Any]] = await rclient.client_list()
    return [c for c in clients if int(c["id"]) != me and int(c["id"]) not in before]


async def ids(rclient: aredis.Redis) -> set[int]:
    return {int(c["id"]) for c in await others(rclient, set())}


async def blocking(rclient: aredis.Redis, before: set[int]) -> int:
    return sum(1 for c in await others(rclient, before) if c.get("cmd") in BLOCKING_COMMANDS)


async def ready(worker: WorkerProcess, rclient: aredis.Redis, before: set[int]) -> None:
    """Return once the worker said it is ready and blocks on all its reads."""
    with anyio.fail_after(60):
        # no event announces either, so this wait polls
        while (  # noqa: ASYNC110
            " ready: " not in worker.log() or await blocking(rclient, before) < BLOCKING_PER_WORKER
        ):
            await anyio.sleep(0.05)


async def connections_of(
    start_worker: StartWorker, rclient: aredis.Redis, name: str, queues: list[str]
) -> tuple[int, int]:
    """(blocking, all) connections of an idle worker serving ``queues``."""
    before = await ids(rclient)
    worker = start_worker(name, *queue_args(queues[1:]), queue=queues[0])
    await ready(worker, rclient, before)
    counts = await blocking(rclient, before), len(await others(rclient, before))
    assert worker.terminate() == 0
    with anyio.fail_after(30):  # its connections close with it
        while await others(rclient, before):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return counts


@one_server
async def test_blocking_connections_do_not_grow_with_the_queues(
    start_worker: StartWorker, rclient: aredis.Redis
) -> None:
    # Given idle workers serving 1 and 40 queues, one after the other
    blocking_1, all_1 = await connections_of(start_worker, rclient, "one", ["q"])
    blocking_40, all_40 = await connections_of(start_worker, rclient, "forty", many(40, "q"))
    # Then each blocks on as many connections, and holds about as many in all
    assert blocking_1 == blocking_40 == BLOCKING_PER_WORKER
    assert all_40 <= all_1 + 2, (all_1, all_40)


async def idle_commands(
    start_worker: StartWorker, rclient: aredis.Redis, name: str, queues: list[str], seconds: float
) -> int:
    """Commands an idle worker serving ``queues`` sends in ``seconds``."""
    before = await ids(rclient)
    worker = start_worker(name, *queue_args(queues[1:]), queue=queues[0])
    await ready(worker, rclient, before)
    await rclient.config_resetstat()
    await anyio.sleep(seconds)
    info: dict[str, Any] = await rclient.info("commandstats")
    assert worker.terminate() == 0
    return sum(
        int(stat["calls"])
        for name, stat in info.items()
        if not name.removeprefix("cmdstat_").startswith(("info", "config", "client"))
    )


@one_server
async def test_idle_commands_do_not_grow_with_the_queues(
    start_worker: StartWorker, rclient: aredis.Redis
) -> None:
    # Given idle workers serving 1 and 40 queues, one after the other, each for a few seconds
    seconds = 3.0
    one = await idle_commands(start_worker, rclient, "one", ["q"], seconds)
    forty = await idle_commands(start_worker, rclient, "forty", many(40, "idle"), seconds)
    # Then each sends a bounded few per second for itself (heartbeat, beats, blocked reads),
    # and each more queue at most 0.1 per second
    assert one <= 30 * seconds, one
    assert forty - one <= 0.1 * 39 * seconds, (one, forty)


async def test_a_busy_queue_among_50_idle_ones_is_served(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given a worker serving 50 queues, one of them the deployment's
    queues = many(50, "spread")
    start_worker("w", *queue_args(queues[1:]), queue=queues[0])
    async with get_client() as client:
        dep = await client.create_deployment("async-add", "d", queue=queues[37])
        # When 40 runs are created on that queue
        runs = [
            await client.create_flow_run_from_deployment(dep, {"x": i, "y": 1}) for i in range(40)
        ]
        # Then all complete within seconds (not one per idle queue's block)
        with anyio.fail_after(30):
            for run in runs:
                done = await await_for_flow_run(run.id, timeout=30)
                assert done.state.type is StateType.COMPLETED, done.state
