"""Reading workers' heartbeats: name → last beat (ms, Redis clock) in ``Keys.workers()``.

The beats are written by the process's heartbeat thread (``flowbus._redis.heartbeat``).
Reclaimers compare beats with the Redis clock too, so machines with skewed clocks agree: the
clock of the node holding ``Keys.workers()``, the same one for every beat and every check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from flowbus._core.codec import text
from flowbus._redis.keys import Keys

logger = logging.getLogger("flowbus.worker")


#: The clock of the node a script runs on, in milliseconds.
_NOW_MS = "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)"


async def server_ms(redis: Redis, key: str) -> int:
    """The clock, in milliseconds, of the node that holds ``key``.

    One fixed clock for beats and leases: the nodes of a cluster each have their own, and a
    plain ``TIME`` goes to whichever node the client picks.
    """
    return int(await redis.eval(_NOW_MS, 1, key))


def _ms_by_name(raw: Mapping[Any, Any]) -> dict[str, int]:
    """A hash of name → ms; unreadable entries are left out."""
    found: dict[str, int] = {}
    for name, value in raw.items():
        try:
            found[text(name)] = int(value)
        except ValueError:
            continue
    return found


async def read_beats(redis: Redis, workers_key: str) -> tuple[int, dict[str, int]]:
    """The clock (ms) and every worker's last beat (ms); unreadable beats are left out."""
    now = await server_ms(redis, workers_key)
    return now, _ms_by_name(await redis.hgetall(workers_key))


async def liveness(redis: Redis, keys: Keys, me: str, lease_ms: int) -> tuple[dict[str, bool], str]:
    """Whether each worker (``worker NAME``: its beat within the lease) and each process
    holding runs (``holder NAME``: its lease in ``Keys.holders()`` not ended) is alive, and
    the count of entries handed to ``me``; one round trip."""
    pipe = redis.pipeline(transaction=False)
    pipe.eval(_NOW_MS, 1, keys.workers())
    pipe.hgetall(keys.workers())
    pipe.hgetall(keys.holders())
    pipe.hget(keys.handovers(), me)
    now_raw, raw_beats, raw_ends, handed = await pipe.execute()
    now = int(now_raw)
    beats, ends = _ms_by_name(raw_beats), _ms_by_name(raw_ends)
    alive = {f"worker {name}": now - beat <= lease_ms for name, beat in beats.items()}
    alive.update((f"holder {name}", end >= now) for name, end in ends.items())
    return alive, text(handed)


async def live_workers(redis: Redis, workers_key: str, lease_ms: int) -> set[str]:
    """Names of workers whose last beat is within the lease."""
    now, beats = await read_beats(redis, workers_key)
    return {name for name, beat in beats.items() if now - beat <= lease_ms}
