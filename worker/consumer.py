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
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker import groups

logger = logging.getLogger("flowbus.worker")

#: Most entries read at once (when that many slots are free).
READ_BATCH = 16
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
        # one slot in hand while blocked: others stay free for the reclaimer and for runs
        token = object()
        await limiter.acquire_on_behalf_of(token)
        count = min(READ_BATCH, 1 + int(limiter.available_tokens))
        try:
            entries = await groups.read_new(redis, stream, consumer, count=count, block_ms=block_ms)
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
        for entry_id, fields in entries:
            if token is None:  # the batch outgrew the slots free when it was read: wait
                token = object()
                await limiter.acquire_on_behalf_of(token)
            runs.start_soon(handler, entry_id, fields, token)
            token = None


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
