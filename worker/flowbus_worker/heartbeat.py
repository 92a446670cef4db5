"""The worker's heartbeat: its name → last beat (ms, Redis clock) in ``Keys.workers()``.

Reclaimers compare beats with the Redis clock too, so machines with skewed clocks agree: the
clock of the node holding ``Keys.workers()``, the same one for every beat and every check.
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskStatus
from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("flowbus.worker")


#: The clock of the node a script runs on, in milliseconds.
_NOW_MS = "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)"


async def server_ms(redis: Redis, key: str) -> int:
    """The clock, in milliseconds, of the node that holds ``key``.

    One fixed clock for beats and leases: the nodes of a cluster each have their own, and a
    plain ``TIME`` goes to whichever node the client picks.
    """
    return int(await redis.eval(_NOW_MS, 1, key))


async def beat(redis: Redis, workers_key: str, name: str) -> None:
    await redis.hset(workers_key, name, await server_ms(redis, workers_key))


async def heartbeat(
    redis: Redis,
    workers_key: str,
    name: str,
    interval: float,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Beat now (then signal readiness), and every ``interval`` seconds until cancelled."""
    await beat(redis, workers_key, name)
    task_status.started()
    while True:
        await anyio.sleep(interval)
        try:
            await beat(redis, workers_key, name)
        except RedisError as exc:  # a missed beat is retried; a long outage lapses the lease
            logger.warning("Heartbeat failed: %s", exc)


async def live_workers(redis: Redis, workers_key: str, lease_ms: int) -> set[str]:
    """Names of workers whose last beat is within the lease."""
    now = await server_ms(redis, workers_key)
    beats = await redis.hgetall(workers_key)
    live: set[str] = set()
    for name, value in beats.items():
        try:
            if now - int(value) <= lease_ms:
                live.add(name.decode() if isinstance(name, bytes) else str(name))
        except ValueError:
            continue
    return live
