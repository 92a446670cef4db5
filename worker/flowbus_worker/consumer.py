"""The worker's intake: ONE blocking ``XREADGROUP`` over every stream it serves.

Each stream has its own consumer group (of one name); a read names them all
(``XREADGROUP … STREAMS s1 … sK > … >``), so a worker's blocking connections and idle
commands do not grow with its queues, and a busy queue is never waiting behind idle ones.
Run entries are read only while a slot is free, and no slot is held while blocked: the
reclaimer and the runs keep them all. ``COUNT`` is per stream, so a read asks for the free
slots shared among the streams the last read found busy: one busy queue gets them all, a
spread load a share per queue. Entries beyond the free slots (more streams turned busy) wait
here, in order, for theirs, and no read is made meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from flowbus._core.supervisor import supervise
from flowbus._redis.failover import StreamFollower
from flowbus_worker import groups
from flowbus_worker.run_tasks import RunTasks

logger = logging.getLogger("flowbus.worker")

#: Most entries read at once per stream (when that many slots are free).
READ_BATCH = 16

#: Called with the stream, the entry id, its fields and the slot token (which it must release).
EntryHandler = Callable[[str, str, dict[str, str], object], Coroutine[Any, Any, None]]


class GroupReader:
    """Reads new entries of some streams through the workers' groups, across restarts and
    failovers (a :class:`StreamFollower`).

    One reader per list of streams: on a cluster, where one command reaches one node, the
    streams of each hash slot get a reader of their own. ``left_pending`` is told when a
    read was lost with its node: entries it delivered may be pending as this worker's, with
    nothing executing them (the reclaimer takes them once idle a lease).
    """

    def __init__(
        self,
        redis: Redis,
        streams: Sequence[str],
        consumer: str,
        block_ms: int,
        left_pending: Callable[[float], None] | None = None,
    ):
        self.redis = redis
        self.streams = list(dict.fromkeys(streams))
        self.consumer = consumer
        self.block_ms = block_ms
        self.left_pending = left_pending
        self.follower = StreamFollower(self.describe(), self._resync)

    async def start(self) -> None:
        await groups.ensure_groups(self.redis, self.streams)

    async def read(self, count: int) -> list[groups.StreamEntry]:
        """Up to ``count`` new entries per stream; none after a timeout or a recovered error."""
        try:
            entries = await self.follower.read(
                lambda: groups.read_new(
                    self.redis, self.streams, self.consumer, count=count, block_ms=self.block_ms
                )
            )
        except ResponseError as exc:
            if not groups.is_missing_group(exc):
                raise
            await groups.ensure_groups(self.redis, self.streams)  # deleted, or lost in a failover
            return []
        return entries or []

    async def _resync(self) -> None:
        if self.left_pending is not None:
            self.left_pending(anyio.current_time())

    def describe(self) -> str:
        first, more = self.streams[0], len(self.streams) - 1
        return f"{first} and {more} more stream(s)" if more else first


class RunIntake:
    """Reads run entries of all the worker's queues, each handled in ``runs`` with a slot."""

    def __init__(
        self,
        reader: GroupReader,
        limiter: anyio.CapacityLimiter,
        handler: EntryHandler,
        runs: RunTasks,
    ) -> None:
        self.reader = reader
        self.limiter = limiter
        self.handler = handler
        self.runs = runs
        #: ``(stream, entry id)`` read here and not handled to the end (waiting for a slot or
        #: in hand): they are pending as this worker's, and not orphans however long they idle.
        self.held: set[tuple[str, str]] = set()
        #: Streams that had entries in the last read that returned any.
        self.busy_streams = 1

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.reader.start()
        task_status.started()
        await supervise(
            f"Reader of {self.reader.describe()}", self._read_forever, expected=(RedisError,)
        )

    async def _read_forever(self) -> None:
        limiter = self.limiter
        while True:
            await _free_slot(limiter)
            share = int(limiter.available_tokens) // self.busy_streams
            entries = await self.reader.read(min(READ_BATCH, max(1, share)))
            if entries:
                self.busy_streams = len({stream for stream, _id, _fields in entries})
            self.held.update((stream, entry_id) for stream, entry_id, _fields in entries)
            for stream, entry_id, fields in entries:
                token = await _slot(limiter)
                self.runs.start(self._handle(stream, entry_id, fields, token))

    async def _handle(
        self, stream: str, entry_id: str, fields: dict[str, str], token: object
    ) -> None:
        try:
            await self.handler(stream, entry_id, fields, token)
        finally:
            self.held.discard((stream, entry_id))

    def held_in(self, stream: str) -> set[str]:
        return {entry_id for held_stream, entry_id in self.held if held_stream == stream}


async def _free_slot(limiter: anyio.CapacityLimiter) -> None:
    """Return once a slot is free, without keeping it."""
    if limiter.available_tokens >= 1:
        return
    token = object()
    await limiter.acquire_on_behalf_of(token)
    limiter.release_on_behalf_of(token)


async def _slot(limiter: anyio.CapacityLimiter) -> object:
    """A slot's token, taken at once when one is free (it was, when the batch was read).

    Without yielding, the whole batch starts in one loop turn, so its claims share one round
    trip; only a batch that outgrew the free slots (several streams, or the reclaimer) waits.
    """
    token = object()
    try:
        limiter.acquire_on_behalf_of_nowait(token)
    except anyio.WouldBlock:
        await limiter.acquire_on_behalf_of(token)
    return token


async def consume_each(
    reader: GroupReader,
    handler: Callable[[str, str, dict[str, str]], Awaitable[None]],
    *,
    count: int = 10,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Read the reader's streams forever, handling each entry in turn (no slots)."""
    await reader.start()
    task_status.started()

    async def read_forever() -> None:
        while True:
            for stream, entry_id, fields in await reader.read(count):
                await handler(stream, entry_id, fields)

    await supervise(f"Reader of {reader.describe()}", read_forever, expected=(RedisError,))
