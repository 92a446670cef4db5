"""Reading a run's state history and following it live through its queue's events stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from uuid import UUID

from flowbus._core.codec import text
from flowbus._redis.events import (
    RawEntry,
    RunEvent,
    event_or_none,
    history_events,
    raw_entries,
    raw_xread,
)
from flowbus._redis.failover import StreamFollower, caught_up
from flowbus._redis.keys import RunKeys
from flowbus._redis.runtime import Runtime

__all__ = ["RunEvent", "follow", "history", "last_id", "tail"]

#: Milliseconds one blocking read of a follower waits before it reads again.
_BLOCK_MS = 30_000
#: Entries a follower reads at once; below every cap of a queue's events stream, so a read
#: that comes back short missed nothing (see :func:`follow`).
_BATCH = 1000


async def history(runtime: Runtime, run_id: UUID | str) -> list[RunEvent]:
    """Every state change of the run still in its (capped) history, oldest first."""
    return await _recorded(runtime, await runtime.store.run_keys(run_id), str(run_id))


async def _recorded(runtime: Runtime, keys: RunKeys, run_id: str) -> list[RunEvent]:
    pipe = runtime.store.redis.pipeline(transaction=False)
    pipe.lrange(keys.history, 0, -1)
    pipe.hget(keys.run, "flow_name")
    raw, flow = await pipe.execute()
    return history_events(keys.history, run_id, text(flow), raw)


async def follow(
    runtime: Runtime, run_id: UUID | str, *, after: str = "0-0"
) -> AsyncIterator[RunEvent]:
    """Yield the run's state changes after ``after`` (the id of the last one seen) as they
    happen, until a final state.

    The queue's events stream only wakes the follower: what it yields is read from the
    run's history, which holds every step (those no event published too). A read of the
    stream that comes back full may have been overtaken by the stream's cap, so the
    history is read then as well: nothing is missed, however far the follower fell behind,
    nor across a failover (after which it is read again too).
    """
    keys = await runtime.store.run_keys(run_id)
    rid, seen = str(run_id), after
    async for batch in _batches(runtime, keys.queue_events, after=after):
        if (
            batch is not None
            and len(batch) < _BATCH
            and not any(_of_run(fields, rid) for _, fields in batch)
        ):
            continue
        new = [e for e in await _recorded(runtime, keys, rid) if _newer(e.id, seen)]
        for event in new:  # steps of one script share an id: taken together
            seen = event.id
            yield event
            if event.is_final:
                return


def _of_run(fields: Mapping[Any, Any], run_id: str) -> bool:
    return text(fields.get(b"run_id", fields.get("run_id"))) == run_id


def _newer(entry_id: str, than: str) -> bool:
    """Whether stream id ``entry_id`` comes after ``than`` (ids compare as number pairs)."""
    return _id_key(entry_id) > _id_key(than)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)


async def last_id(runtime: Runtime, stream: str) -> str:
    """The id of the newest entry of ``stream`` (a concrete id to continue from)."""
    last = await runtime.store.redis.xrevrange(stream, count=1)
    return raw_entries(last)[0][0] if last else "0-0"


async def tail(runtime: Runtime, stream: str, *, after: str) -> AsyncIterator[RunEvent]:
    """Yield events of ``stream`` after ``after`` forever: blocking reads, never ``$``."""
    async for batch in _batches(runtime, stream, after=after):
        for entry_id, fields in batch or ():
            if (event := event_or_none(stream, entry_id, fields)) is not None:
                yield event


async def _batches(
    runtime: Runtime, stream: str, *, after: str
) -> AsyncIterator[list[RawEntry] | None]:
    """Entries of ``stream`` after ``after``, a read's worth at a time, forever; ``None``
    after a failover or restart (followed to the stream's node), when entries may have been
    lost with it: whatever the caller follows is to be re-read."""
    cursors = {stream: after}
    redis = runtime.waiters.redis
    switched = False

    async def resync() -> None:
        nonlocal switched
        await caught_up(redis, cursors)
        switched = True

    follower = StreamFollower(stream, resync)
    streams: Any = cursors  # redis-py's annotation wants bytes-or-str keys and ids
    while True:
        reply = await follower.read(lambda: redis.xread(streams, block=_BLOCK_MS, count=_BATCH))
        if switched:
            switched = False
            yield None
        for _stream, entries in raw_xread(reply):
            if entries:
                cursors[stream] = entries[-1][0]
                yield entries
