"""Where each queue lives and what waits in it: one queue is one hash slot, so one shard.

Every key of a queue carries its name as hash tag (``fb:{q}:…``), so a Redis Cluster keeps a
queue, its runs and their streams on the primary that serves the slot of the name. Names hash
where they happen to: :func:`spread_names` picks, for a base name, one name per primary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis.crc import key_slot
from redis.exceptions import ResponseError

from flowbus._core.codec import text
from flowbus._redis.connect import node_of, primaries_of
from flowbus._redis.keys import validate_queue_name
from flowbus._redis.runtime import Runtime

#: The workers' consumer group on every queue stream.
_GROUP = "flowbus-workers"
#: Suffixes tried per base name before giving up on a primary (16384 slots, a few primaries).
_TRIES = 10_000


@dataclass(frozen=True, slots=True)
class QueuePlace:
    """One queue: its node and slot, and how many runs wait or run in it."""

    queue: str
    node: str
    slot: int
    #: Entries of the queue stream no worker has read yet.
    queued: int
    #: Entries read by a worker and not acknowledged: runs being executed.
    running: int
    #: Paused, suspended or sleeping runs that have a deadline.
    paused_with_deadline: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def list_queues(runtime: Runtime) -> list[QueuePlace]:
    """Every queue that ever held a run, by name, with its node, slot and counts."""
    redis, keys = runtime.redis, runtime.store.keys
    names = sorted(text(q) for q in await redis.smembers(keys.queues()))
    pipe = redis.pipeline(transaction=False)
    for name in names:
        qkeys = keys.queue(name)
        pipe.xinfo_groups(qkeys.stream())
        pipe.xlen(qkeys.stream())
        pipe.zcard(qkeys.deadlines())
    replies = await pipe.execute(raise_on_error=False)
    found = []
    for i, name in enumerate(names):
        groups, length, paused = replies[3 * i : 3 * i + 3]
        queued, running = _counts(groups, length)
        found.append(
            QueuePlace(
                queue=name,
                node=node_of(redis, keys.queue(name).stream()),
                slot=key_slot(name.encode()),
                queued=queued,
                running=running,
                paused_with_deadline=paused if isinstance(paused, int) else 0,
            )
        )
    return found


def _counts(groups: Any, length: Any) -> tuple[int, int]:
    """Queued and running entries of a queue stream, from ``XINFO GROUPS`` and ``XLEN``."""
    size = length if isinstance(length, int) else 0
    if isinstance(groups, ResponseError) or not isinstance(groups, list):
        return size, 0  # no stream yet
    group = next((g for g in groups if text(g.get("name", b"")) == _GROUP), None)
    if group is None:
        return size, 0  # no worker ever served it: every entry waits
    lag, pending = group.get("lag"), int(group.get("pending", 0))
    # without a lag (Redis cannot tell after some deletions), what the stream holds beyond
    # the entries in hand: acknowledged entries are dropped with their ack (but for a tail
    # of less than a stream node and 16 entries, which this counts as queued)
    return (lag if isinstance(lag, int) else max(0, size - pending)), pending


async def spread_names(runtime: Runtime, base: str) -> list[tuple[str, str]]:
    """One queue name per primary, ``base-N`` with the smallest N whose slot that primary
    serves: queues named so spread over every shard. (name, node) pairs, by node."""
    validate_queue_name(f"{base}-1")
    redis, keys = runtime.redis, runtime.store.keys
    await redis.ping()  # connected: the slot map is known
    wanted = set(primaries_of(redis))
    chosen: dict[str, str] = {}
    for n in range(1, _TRIES):
        name = f"{base}-{n}"
        node = node_of(redis, keys.queue(name).stream())
        if node in wanted and node not in chosen:
            chosen[node] = name
            if len(chosen) == len(wanted):
                break
    return sorted(((name, node) for node, name in chosen.items()), key=lambda p: p[1])
