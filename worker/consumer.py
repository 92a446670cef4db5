"""The queue consumer: a free slot first, then one entry from the queue stream's group.

Reading only with a slot in hand keeps undelivered entries in the stream, where another
worker with free slots takes them, instead of in this worker's pending list.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker import groups

logger = logging.getLogger("flowbus.worker")

#: Seconds between attempts while Redis is unreachable (doubling, capped).
BACKOFF_START, BACKOFF_MAX = 0.1, 5.0

#: Called with the entry id, its fields and the slot token (which it must release).
EntryHandler = Callable[[str, dict[str, str], object], Coroutine[Any, Any, None]]


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
    backoff = BACKOFF_START
    while True:
        token = object()
        await limiter.acquire_on_behalf_of(token)
        try:
            entries = await groups.read_new(redis, stream, consumer, count=1, block_ms=block_ms)
        except ResponseError as exc:
            limiter.release_on_behalf_of(token)
            if not groups.is_missing_group(exc):
                raise
            await groups.ensure_group(redis, stream)
            continue
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            limiter.release_on_behalf_of(token)
            logger.warning("Reading %s failed (%s); retrying in %.1fs", stream, exc, backoff)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        except BaseException:
            limiter.release_on_behalf_of(token)
            raise
        backoff = BACKOFF_START
        if not entries:
            limiter.release_on_behalf_of(token)
            continue
        entry_id, fields = entries[0]
        runs.start_soon(handler, entry_id, fields, token)


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
    backoff = BACKOFF_START
    while True:
        try:
            entries = await groups.read_new(redis, stream, consumer, count=count, block_ms=block_ms)
        except ResponseError as exc:
            if not groups.is_missing_group(exc):
                raise
            await groups.ensure_group(redis, stream)
            continue
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            logger.warning("Reading %s failed (%s); retrying in %.1fs", stream, exc, backoff)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        backoff = BACKOFF_START
        for entry_id, fields in entries:
            await handler(entry_id, fields)
