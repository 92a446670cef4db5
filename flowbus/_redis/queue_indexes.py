"""A queue's sorted sets read page by page: its runs newest first (listings) and its earliest
deadlines (sweepers). Members that name no run any more are dropped from the set on the way."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from typing import cast
from uuid import UUID

from flowbus._core.codec import text
from flowbus._redis.records import run_from_hash
from flowbus._redis.store import RunStore
from flowbus.models import FlowRun
from flowbus.states import StateType

#: Most run ids read from a queue's index at once when listing runs.
_READ_PAGE = 1000


def _is_uuid(raw: bytes) -> bool:
    try:
        UUID(text(raw))
    except ValueError:
        return False
    return True


def _ms(score: float) -> int:
    """A sorted set's score as milliseconds (scores may be ``inf``)."""
    return int(score) if math.isfinite(score) else (sys.maxsize if score > 0 else 0)


async def read_runs(
    store: RunStore,
    *,
    queue: str | None = None,
    flow_name: str | None = None,
    state_types: Iterable[StateType] | None = None,
    limit: int = 100,
) -> list[FlowRun]:
    """Runs newest first, filtered by queue, flow and state kind."""
    queues = (
        [queue]
        if queue
        else sorted(text(q) for q in await store.redis.smembers(store.keys.queues()))
    )
    wanted = set(state_types) if state_types is not None else None

    def keep(run: FlowRun) -> bool:
        if flow_name and run.flow_name != flow_name:
            return False
        return wanted is None or run.state.type in wanted

    runs: list[FlowRun] = []
    for q in queues:
        runs += await _newest_runs(store, q, keep, limit)
    runs.sort(key=lambda r: r.created, reverse=True)
    return runs[:limit]


async def _newest_runs(
    store: RunStore, queue: str, keep: Callable[[FlowRun], bool], limit: int
) -> list[FlowRun]:
    """Up to ``limit`` runs of ``queue`` that ``keep`` accepts, newest first, read page by
    page so a queue of millions of runs costs only the pages needed; ids of expired runs
    are dropped from the queue's index on the way."""
    qkeys = store.keys.queue(queue)
    page = min(max(limit, 100), _READ_PAGE)
    found: list[FlowRun] = []
    seen: set[str] = set()  # runs created meanwhile shift the pages: never list one twice
    start = 0
    while len(found) < limit:
        chunk = await store.redis.zrevrange(qkeys.runs(), start, start + page - 1)
        if not chunk:
            break
        start += len(chunk)
        ids = [rid for rid in map(text, chunk) if rid not in seen]
        seen.update(ids)
        pipe = store.redis.pipeline(transaction=False)
        listed = [qkeys.run(rid) for rid in ids]
        for keys in listed:
            pipe.hgetall(keys.run)
        gone: list[str] = []
        for keys, raw in zip(listed, await pipe.execute(), strict=True):
            if not raw:
                gone.append(keys.run_id)
            elif keep(run := run_from_hash(raw, keys)):
                found.append(store.with_result_source(run))
        if gone:
            await store.redis.zrem(qkeys.runs(), *gone)
            start -= len(gone)  # they no longer take places in the index
    return found[:limit]


async def earliest_deadlines(store: RunStore, queue: str, count: int) -> list[tuple[str, int]]:
    """The ``count`` earliest (run id, deadline ms) of ``queue``'s deadline set.

    Members that are no run id (anyone can ``ZADD``) are dropped from the set on the way,
    so they cannot stay first forever; a deadline at infinity is the largest integer.
    """
    deadlines = store.keys.queue(queue).deadlines()
    raw = await store.redis.zrange(deadlines, 0, count - 1, withscores=True)
    pairs = cast("list[tuple[bytes, float]]", raw)  # withscores=True: (member, score)
    found = [(text(member), _ms(score)) for member, score in pairs if _is_uuid(member)]
    junk = [member for member, _score in pairs if not _is_uuid(member)]
    if junk:
        await store.redis.zrem(deadlines, *junk)
    return found
