"""Crash recovery: take over pending entries whose consumer stopped beating.

``XAUTOCLAIM`` cannot tell a dead consumer from a live one running a long flow (both leave
the entry idle), so the reclaimer lists idle entries with ``XPENDING``, keeps those of
consumers whose heartbeat lapsed (and its own entries nothing here executes), and takes each
with ``XCLAIM`` and the same minimum idle time: of racing reclaimers exactly one gets it.
"""

from __future__ import annotations

from collections.abc import Collection

from redis.asyncio import Redis

from flowbus_worker import groups
from flowbus_worker.heartbeat import live_workers

#: Pending entries examined per stream per round.
BATCH = 100


async def orphans(
    redis: Redis,
    stream: str,
    *,
    workers_key: str,
    me: str,
    lease_ms: int,
    mine_active: Collection[str],
) -> list[groups.PendingEntry]:
    """Entries idle past the lease whose consumer is dead (or is us, not executing them)."""
    entries = await groups.pending(redis, stream, min_idle_ms=lease_ms, count=BATCH)
    if not entries:
        return []
    live = await live_workers(redis, workers_key, lease_ms)
    return [
        entry
        for entry in entries
        if (entry.consumer == me and entry.entry_id not in mine_active)
        or (entry.consumer != me and entry.consumer not in live)
    ]


async def forget_dead(
    redis: Redis,
    streams: list[str],
    *,
    workers_key: str,
    holders_key: str,
    infos_key: str,
    lease_ms: int,
) -> bool:
    """Leave no trace of dead workers: each one whose beat lapsed and that holds no entry of
    ``streams`` any more (all reclaimed) is removed from their groups, with its beats and
    its description. Returns whether dead consumers still hold entries (not idle a lease
    yet, so not taken: a later scan takes them)."""
    live = await live_workers(redis, workers_key, lease_ms)
    idle: dict[str, int] = {}
    for stream in streams:
        for consumer in await groups.consumers(redis, stream):
            if consumer.name not in live:
                idle[consumer.name] = idle.get(consumer.name, 0) + consumer.pending
    dead = [name for name, pending in idle.items() if pending == 0]
    holding = len(dead) < len(idle)
    if not dead:
        return holding
    pipe = redis.pipeline(transaction=False)
    for name in dead:
        for stream in streams:
            pipe.xgroup_delconsumer(stream, groups.GROUP, name)
    pipe.hdel(workers_key, *dead)
    pipe.hdel(holders_key, *dead)
    pipe.hdel(infos_key, *dead)
    await pipe.execute(raise_on_error=False)
    return holding
