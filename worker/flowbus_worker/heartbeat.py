"""Reading workers' heartbeats: name → last beat (ms, Redis clock) in ``Keys.workers()``.

The beats are written by the process's heartbeat thread (``flowbus._redis.heartbeat``).
Reclaimers compare beats with the Redis clock too, so machines with skewed clocks agree: the
clock of the node holding ``Keys.workers()``, the same one for every beat and every check.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from flowbus._core.codec import text

logger = logging.getLogger("flowbus.worker")


#: The clock of the node a script runs on, in milliseconds.
_NOW_MS = "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)"


async def server_ms(redis: Redis, key: str) -> int:
    """The clock, in milliseconds, of the node that holds ``key``.

    One fixed clock for beats and leases: the nodes of a cluster each have their own, and a
    plain ``TIME`` goes to whichever node the client picks.
    """
    return int(await redis.eval(_NOW_MS, 1, key))


async def live_workers(redis: Redis, workers_key: str, lease_ms: int) -> set[str]:
    """Names of workers whose last beat is within the lease."""
    now = await server_ms(redis, workers_key)
    beats = await redis.hgetall(workers_key)
    live: set[str] = set()
    for name, value in beats.items():
        try:
            if now - int(value) <= lease_ms:
                live.add(text(name))
        except ValueError:
            continue
    return live
