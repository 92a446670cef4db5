"""Given a worker draining trivial runs, what each costs Redis: scripts, commands, keys, bytes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus.flow_runs import await_for_flow_run
from tests.e2e.conftest import StartWorker
from tests.e2e.support import wait_for_log
from tests.e2e.test_many_queues import one_server

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]

RUNS = 20
#: Script calls of a trivial run: create, claim (start), complete (with its task's result);
#: calls of one loop turn on runs of one queue share one FCALL.
SCRIPTS_PER_RUN = 3
#: Most script calls of the worker's lease beats while the runs are drained (each writes two
#: hash fields).
BEATS_MAX = 5
#: Most calls per trivial run of the commands that write: three events (its start's PENDING
#: is not published) and the queue entry; a history entry per step; the expiry of its hash,
#: history and task results (its pause and input keys only if it has any; it has no index).
WRITES_PER_RUN_MAX = {"xadd": 4, "rpush": 3, "expire": 3, "hset": 4, "xack": 1, "xdel": 1}
#: Most commands per trivial run in all, those the scripts call, the creator's, the worker's
#: and the waiter's (each run is awaited on its own here) included.
COMMANDS_PER_RUN_MAX = 34
#: A finished run's keys (hash, history, task results) and its share of the queue's runs
#: index, in bytes: what retention keeps.
RETAINED_BYTES_PER_RUN_MAX = 2048


async def commands(rclient: aredis.Redis) -> dict[str, int]:
    info: dict[str, Any] = await rclient.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in info.items()}


async def run_all(runs: int) -> list[UUID]:
    async with get_client() as client:
        dep = await client.create_deployment("echo-once", "cost")
        ids = [(await client.create_flow_run_from_deployment(dep)).id for _ in range(runs)]
    for run_id in ids:
        done = await await_for_flow_run(run_id, timeout=90)
        assert done.state.type is StateType.COMPLETED, done.state
    return ids


async def memory(rclient: aredis.Redis, keys: list[str]) -> int:
    sizes = [await rclient.memory_usage(key, samples=0) for key in keys]
    return sum(int(size or 0) for size in sizes)


@one_server
async def test_a_trivial_run_costs_three_scripts_and_a_bounded_number_of_commands(
    start_worker: StartWorker, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a worker that ran a first run (its scripts loaded, its lease written)
    worker = start_worker("w1")
    await wait_for_log(worker, " ready: ")
    await run_all(1)
    # When it drains more trivial runs
    await rclient.config_resetstat()
    await run_all(RUNS)
    calls = await commands(rclient)
    # Then each cost three script calls at most (and the worker beat its leases a few times),
    # and no more commands than the bounds
    assert 0 < calls.get("fcall", 0) <= SCRIPTS_PER_RUN * RUNS + BEATS_MAX, calls
    for name, most in WRITES_PER_RUN_MAX.items():
        assert calls.get(name, 0) <= most * RUNS + BEATS_MAX * 2, (name, calls)
    own = {k: v for k, v in calls.items() if not k.startswith(("info", "config"))}
    assert sum(own.values()) <= COMMANDS_PER_RUN_MAX * RUNS, calls


@one_server
async def test_a_finished_run_keeps_few_keys_and_bytes_and_the_queue_stream_is_drained(
    start_worker: StartWorker, rclient: aredis.Redis, flowbus_env: str, runtime_closed: None
) -> None:
    # Given a worker that drained trivial runs
    start_worker("w1")
    ids = await run_all(RUNS)
    tag = f"{flowbus_env}:{{default}}"
    # Then each finished run keeps its hash, history and task results, all expiring, and no
    # index (its id carries its queue), within the retained bytes per run
    per_run: list[set[str]] = []
    retained = 0
    for run_id in ids:
        base = f"{tag}:run:{run_id}"
        keys = sorted([k async for k in rclient.scan_iter(match=f"{base}*", count=1000)])
        per_run.append({k.removeprefix(base) for k in keys})
        assert not await rclient.exists(f"{flowbus_env}:runs:{run_id}")
        for key in keys:
            assert await rclient.ttl(key) > 0, key
        retained += await memory(rclient, keys)
    assert all(names == {"", ":history"} for names in per_run), per_run
    retained += await memory(rclient, [f"{tag}:runs"])
    assert retained / RUNS <= RETAINED_BYTES_PER_RUN_MAX
    # And the queue stream holds nothing pending, and of what was acknowledged a tail
    # shorter than a stream node (100 entries) and the 16 acknowledgements between trims
    pending: Any = await rclient.xpending(f"{tag}:queue", "flowbus-workers")
    assert pending["pending"] == 0
    assert await rclient.xlen(f"{tag}:queue") < 100 + 16
