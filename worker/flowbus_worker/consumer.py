"""The queue consumer: a free slot first, then entries (as many as slots are free).

Reading only with slots in hand keeps undelivered entries in the stream, where another
worker with free slots takes them, instead of in this worker's pending list.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from flowbus._core.supervisor import supervise
from flowbus._redis.connect import lost_node
from flowbus._redis.events import Entry
from flowbus_worker import groups

logger = logging.getLogger("flowbus.worker")

#: Most entries read at once (when that many slots are free).
READ_BATCH = 16
#: Seconds between attempts while Redis is unreachable (doubling, capped).
BACKOFF_START, BACKOFF_MAX = 0.1, 5.0

#: Called with the entry id, its fields and the slot token (which it must release).
EntryHandler = Callable[[str, dict[str, str], object], Coroutine[Any, Any, None]]


class _GroupReader:
    """Reads new entries of one stream through the workers' group, surviving Redis hiccups."""

    def __init__(self, redis: Redis, stream: str, consumer: str, block_ms: int) -> None:
        self.redis = redis
        self.stream = stream
        self.consumer = consumer
        self.block_ms = block_ms
        self.backoff = BACKOFF_START

    async def read(self, count: int) -> list[Entry]:
        """Up to ``count`` new entries; none after a timeout or a recovered error."""
        try:
            entries = await groups.read_new(
                self.redis, self.stream, self.consumer, count=count, block_ms=self.block_ms
            )
        except (RedisError, OSError) as exc:
            if isinstance(exc, ResponseError) and groups.is_missing_group(exc):
                await groups.ensure_group(self.redis, self.stream)  # deleted, or lost in a failover
                return []
            if not lost_node(exc):
                raise
            await self._back_off(exc)
            return []
        self.backoff = BACKOFF_START
        return entries

    async def _back_off(self, exc: BaseException) -> None:
        """Wait before reading again: the next read goes to the node owning the stream now."""
        logger.warning("Reading %s failed (%s); retrying in %.1fs", self.stream, exc, self.backoff)
        await anyio.sleep(self.backoff)
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)


async def consume(
    redis: Redis,
    stream: str,
    consumer: str,
    limiter: anyio.CapacityLimiter,
    handler: EntryHandler,
    runs: TaskGroup,
    *,
    block_ms: int,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Read ``stream`` through the workers' group forever, each entry handled in ``runs``."""
    await groups.ensure_group(redis, stream)
    task_status.started()
    reader = _GroupReader(redis, stream, consumer, block_ms)
    await supervise(
        f"Reader of {stream}",
        lambda: _read_forever(reader, limiter, handler, runs),
        expected=(RedisError,),
    )


async def _read_forever(
    reader: _GroupReader, limiter: anyio.CapacityLimiter, handler: EntryHandler, runs: TaskGroup
) -> None:
    while True:
        # one slot in hand while blocked: others stay free for the reclaimer and for runs
        token: object | None = object()
        await limiter.acquire_on_behalf_of(token)
        try:
            entries = await reader.read(min(READ_BATCH, 1 + int(limiter.available_tokens)))
        except BaseException:
            limiter.release_on_behalf_of(token)
            raise
        if not entries:
            limiter.release_on_behalf_of(token)
            continue
        for entry_id, fields in entries:
            if token is None:
                token = await _slot(limiter)
            runs.start_soon(handler, entry_id, fields, token)
            token = None


async def _slot(limiter: anyio.CapacityLimiter) -> object:
    """A slot's token, taken at once when one is free (it was, when the batch was read).

    Without yielding, the whole batch starts in one loop turn, so its claims share one round
    trip; only a batch that outgrew the free slots (the reclaimer took some) waits.
    """
    token = object()
    try:
        limiter.acquire_on_behalf_of_nowait(token)
    except anyio.WouldBlock:
        await limiter.acquire_on_behalf_of(token)
    return token


async def consume_each(
    redis: Redis,
    stream: str,
    consumer: str,
    handler: Callable[[str, dict[str, str]], Awaitable[None]],
    *,
    block_ms: int,
    count: int = 10,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Read ``stream`` through the workers' group, handling each entry in turn (no slots)."""
    await groups.ensure_group(redis, stream)
    task_status.started()
    reader = _GroupReader(redis, stream, consumer, block_ms)

    async def read_forever() -> None:
        while True:
            for entry_id, fields in await reader.read(count):
                await handler(entry_id, fields)

    await supervise(f"Reader of {stream}", read_forever, expected=(RedisError,))
