"""Reading a run's state history and following it live from its event stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID

from redis.exceptions import RedisError

from flowbus._redis.connect import lost_node
from flowbus._redis.events import RunEvent, event_or_none, raw_entries, raw_xread, run_events
from flowbus._redis.runtime import Runtime

__all__ = ["RunEvent", "follow", "history", "last_id", "tail"]

#: Milliseconds one blocking read of a follower waits before it reads again.
_BLOCK_MS = 30_000
#: Seconds a follower waits before it reads again after its node went away.
_RETRY_SECONDS = 0.2


async def history(runtime: Runtime, run_id: UUID | str) -> list[RunEvent]:
    """Every state change of the run still in its (capped) event stream, oldest first."""
    keys = await runtime.store.run_keys(run_id)
    raw = await runtime.store.redis.xrange(keys.events)
    return run_events(keys.events, raw)


async def follow(
    runtime: Runtime, run_id: UUID | str, *, after: str = "0-0"
) -> AsyncIterator[RunEvent]:
    """Yield the run's events after ``after`` as they are published, until a final state."""
    keys = await runtime.store.run_keys(run_id)
    async for event in tail(runtime, keys.events, after=after):
        yield event
        if event.is_final:
            return


async def last_id(runtime: Runtime, stream: str) -> str:
    """The id of the newest entry of ``stream`` (a concrete id to continue from)."""
    last = await runtime.store.redis.xrevrange(stream, count=1)
    return raw_entries(last)[0][0] if last else "0-0"


async def tail(runtime: Runtime, stream: str, *, after: str) -> AsyncIterator[RunEvent]:
    """Yield events of ``stream`` after ``after`` forever: blocking reads, never ``$``."""
    cursor = after
    redis = runtime.waiters.redis
    while True:
        try:
            reply = await redis.xread({stream: cursor}, block=_BLOCK_MS, count=100)
        except (RedisError, OSError) as exc:
            if not lost_node(exc):
                raise
            await asyncio.sleep(_RETRY_SECONDS)  # then read from the node owning the stream now
            continue
        for _stream, entries in raw_xread(reply):
            for entry_id, fields in entries:
                cursor = entry_id
                if (event := event_or_none(stream, entry_id, fields)) is not None:
                    yield event
