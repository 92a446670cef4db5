"""Commands issued in the same event-loop turn share one round trip (automatic pipelining).

A worker claims every run one ``XREADGROUP`` delivered, and finishes them about together; an
enqueuer creates many runs at once. Sent one by one, each costs redis-py's per-round-trip work
(pool checkout, socket write, wake-up; tens of µs of CPU) and a server read. Grouped, the cost is
paid once per turn of the loop, and a lone caller waits one loop turn longer.

On one server, a turn's commands skip redis-py's per-command machinery (a pipeline object,
a stack entry, options and a response callback per command): they are packed by hiredis in
one call and sent on one connection checkout, and their raw replies read back in order. On a
cluster, redis-py's cluster pipeline sends each node its share of the turn's commands (one
round trip per node, all at once) and resends a redirected command to its new node; it queues
for connections as any command does (``connect.QueuedCluster``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import NoScriptError, ResponseError

from flowbus._core.supervisor import spawn
from flowbus._redis.connect import is_cluster


class Commands(Protocol):
    """Where a build adds its commands: a redis-py pipeline, or a :class:`Batch`."""

    def execute_command(self, *args: Any) -> Any: ...

    def __len__(self) -> int: ...


#: Adds one caller's commands (``execute_command`` only, replies raw); must not raise.
Build = Callable[[Commands], object]


class Batch:
    """The commands of one turn for one server, as their arguments."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)

    def __len__(self) -> int:
        return len(self.commands)

    async def send(self, redis: Redis) -> list[Any]:
        """Send every command on one connection; the replies, an error reply as its exception.

        A dropped connection is retried as redis-py retries a pipeline: the whole batch again
        on a new connection (safe for flowbus's commands, see ``runtime.open_redis``).
        """
        pool = redis.connection_pool
        conn: Connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            replies: list[Any] = await conn.retry.call_with_retry(
                lambda: self._exchange(conn), lambda _error: conn.disconnect()
            )
        finally:
            await pool.release(conn)
        return replies

    async def _exchange(self, conn: Connection) -> list[Any]:
        await conn.send_packed_command(conn.pack_commands(self.commands))
        replies: list[Any] = []
        for _ in self.commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies


#: Callers' command groups per pipeline: a burst larger than this is sent in several.
MAX_GROUPS = 256


@dataclass(slots=True)
class _Request:
    build: Build
    future: asyncio.Future[list[Any]]


class AutoPipeline:
    """Sends the command groups submitted during one loop turn as one pipeline.

    Each caller gets its own replies. A group whose reply holds an error gets that error
    raised; the others are unaffected. A group that met ``NOSCRIPT`` (a server restarted
    without its scripts) is sent once more after ``reload_scripts``, so its other commands
    must be idempotent.
    """

    def __init__(self, redis: Redis, reload_scripts: Callable[[], Awaitable[None]]) -> None:
        self._redis = redis
        self._reload_scripts = reload_scripts
        self._pending: list[_Request] = []
        self._cluster = is_cluster(redis)

    async def execute(self, build: Build) -> list[Any]:
        """The replies to the commands ``build`` adds, in order, once their pipeline ran."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append(_Request(build, future))
        if len(self._pending) == 1:
            spawn(self._send_turn(), name="pipeline")
        return await future

    async def _send_turn(self) -> None:
        """Send what this loop turn submitted: a new task first runs in the next turn, when
        every caller of this one has added its commands."""
        pending, self._pending = self._pending, []
        for start in range(MAX_GROUPS, len(pending), MAX_GROUPS):
            spawn(self._send(pending[start : start + MAX_GROUPS]), name="pipeline")
        await self._send(pending[:MAX_GROUPS])

    async def _send(self, requests: list[_Request]) -> None:
        try:
            retry = await self._send_once(requests)
            if retry:
                await self._reload_scripts()
                await self._send_once(retry, final=True)
        except asyncio.CancelledError:
            for request in requests:
                request.future.cancel()
            raise
        except Exception as exc:
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(exc)

    async def _send_once(self, requests: list[_Request], *, final: bool = False) -> list[_Request]:
        """Send the requests still awaited; those that met NOSCRIPT are returned to retry."""
        live = [r for r in requests if not r.future.done()]  # a cancelled caller sends nothing
        if not live:
            return []
        pipe: Commands = self._redis.pipeline(transaction=False) if self._cluster else Batch()
        spans: list[tuple[int, int]] = []
        for request in live:
            start = len(pipe)
            request.build(pipe)
            spans.append((start, len(pipe)))
        replies = await self._execute(pipe)
        retry: list[_Request] = []
        for request, (start, end) in zip(live, spans, strict=True):
            own = replies[start:end]
            error = next((r for r in own if isinstance(r, Exception)), None)
            if request.future.done():
                continue
            if isinstance(error, NoScriptError) and not final:
                retry.append(request)
            elif error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(own)
        return retry

    async def _execute(self, pipe: Commands) -> list[Any]:
        if isinstance(pipe, Batch):
            return await pipe.send(self._redis)
        # a cluster pipeline: it queues for each node's connections (``connect.QueuedCluster``)
        replies: list[Any] = await pipe.execute(raise_on_error=False)  # type: ignore[attr-defined]
        return replies
