"""Commands issued in the same event-loop turn share one round trip (automatic pipelining).

A worker claims every run one ``XREADGROUP`` delivered, and finishes them about together; an
enqueuer creates many runs at once. Sent one by one, each costs redis-py's per-round-trip work
(pool checkout, socket write, wake-up; tens of µs of CPU) and a server read. Grouped, the cost is
paid once per turn of the loop, and a lone caller waits one loop turn longer.

A turn's commands skip redis-py's per-command machinery (a pipeline object, a stack entry,
options and a response callback per command; on a cluster also a routing policy and a timing
record per command, each awaited): they are packed by hiredis in one call and their raw
replies read back in order (adjacent script calls on runs of one queue as one ``FCALL``:
:mod:`flowbus._redis.merged_calls`). On one server they go on the connection the previous
turn's batch used (kept, not checked out of the pool again: a checkout and release cost more
CPU than a lone caller's round trip); on a cluster each node gets its share at once, on one of
its connections, queued for as any command is (``connect.QueuedCluster.send_batch``). A
failover is waited out: a caller whose commands met a lost node (see :mod:`failover`) has
them sent again, with backoff, for up to the client's ``failover_timeout`` (a lost
connection is waited out by ``send_batch`` itself).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import NoScriptError, ResponseError

from flowbus._core.supervisor import spawn
from flowbus._redis.connect import QueuedCluster
from flowbus._redis.failover import Backoff, lost_node
from flowbus._redis.merged_calls import CallMerger


class Commands(Protocol):
    """Where a build adds its commands (a :class:`Batch`)."""

    def execute_command(self, *args: Any, node_of: str | None = None) -> Any: ...

    def __len__(self) -> int: ...


#: Adds one caller's commands (``execute_command`` only, replies raw); must not raise.
Build = Callable[[Commands], object]


class Batch:
    """The commands of one turn, as their arguments. Each names its key first, or is a
    script or function call (``FCALL name numkeys key …``), or is a command of no key sent
    to the server of the key ``node_of`` names (``WAIT``: one server has them all)."""

    __slots__ = ("commands", "node_of")

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []
        #: Positions of the commands of no key → the key whose server gets them.
        self.node_of: dict[int, str] = {}

    def execute_command(self, *args: Any, node_of: str | None = None) -> None:
        if node_of is not None:
            self.node_of[len(self.commands)] = node_of
        self.commands.append(args)

    def __len__(self) -> int:
        return len(self.commands)

    async def send(self, conn: Connection) -> list[Any]:
        """Send every command on ``conn``; the replies, an error reply as its exception.

        A dropped connection is retried as redis-py retries a pipeline: the whole batch again
        on a new connection (safe for flowbus's commands, see ``runtime.open_redis``).
        """
        replies: list[Any] = await conn.retry.call_with_retry(
            lambda: self._exchange(conn), lambda _error: conn.disconnect()
        )
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


def missing_script(error: BaseException | None) -> bool:
    """Whether a reply says the server lacks the script (NOSCRIPT) or function called."""
    if isinstance(error, NoScriptError):
        return True
    return isinstance(error, ResponseError) and str(error).startswith("Function not found")


#: Callers' command groups per pipeline: a burst larger than this is sent in several.
MAX_GROUPS = 256


@dataclass(slots=True)
class _Request:
    build: Build
    future: asyncio.Future[list[Any]]


class AutoPipeline:
    """Sends the command groups submitted during one loop turn as one pipeline.

    Each caller gets its own replies. A group whose reply holds an error gets that error
    raised; the others are unaffected. A group that met a missing script (a server restarted
    without its scripts) is sent once more after ``reload_scripts``, so its other commands
    must be idempotent.
    """

    def __init__(
        self,
        redis: Redis,
        reload_scripts: Callable[[], Awaitable[None]],
        merger: CallMerger | None = None,
    ) -> None:
        self._redis = redis
        self._reload_scripts = reload_scripts
        #: Merges a turn's adjacent script calls on one queue into one (see merged_calls).
        self._merger = merger
        self._pending: list[_Request] = []
        #: On a cluster, the client whose failovers are waited out.
        self._cluster = redis if isinstance(redis, QueuedCluster) else None
        #: One server: the connection of the last batch, kept for the next one (a pool
        #: checkout and release cost more CPU than a lone caller's whole round trip).
        self._kept: Connection | None = None

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
        """Send the requests still awaited; return those that met a missing script (unless
        ``final``)."""
        live = [r for r in requests if not r.future.done()]  # a cancelled caller sends nothing
        if not live:
            return []
        if self._cluster is None:
            return self._hand_out(live, await self._execute(live), final=final)
        return await self._through_failover(self._cluster, live, final=final)

    async def _execute(self, requests: list[_Request]) -> list[list[Any]]:
        """Send the requests' commands in one batch (each node its share, on a cluster) and
        split the replies: each request's own, in its order (errors in place)."""
        batch = Batch()
        spans: list[tuple[int, int]] = []
        for request in requests:
            start = len(batch)
            request.build(batch)
            spans.append((start, len(batch)))
        merged = self._merger.merge(batch.commands, batch.node_of) if self._merger else None
        if merged is not None:
            batch.commands, batch.node_of, counts = merged
        if self._cluster is None:
            replies = await self._send_batch(batch)
        else:  # it queues for each node's connections (``connect.QueuedCluster``)
            replies = await self._cluster.send_batch(batch.commands, batch.node_of)
        if merged is not None:
            replies = CallMerger.split(replies, counts)
        return [replies[start:end] for start, end in spans]

    async def _send_batch(self, batch: Batch) -> list[Any]:
        """Send ``batch`` on the kept connection, or on one from the pool while another batch
        has it; the connection is kept for the next batch, or returned to the pool if the
        exchange failed (redis-py drops a connection a read was cut short on), another
        connection is kept meanwhile, or the pool has no other for the client's own commands.
        """
        pool = self._redis.connection_pool
        conn, self._kept = self._kept, None
        if conn is None:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            replies = await batch.send(conn)
        except BaseException:
            await pool.release(conn)
            raise
        if self._kept is None and pool.max_connections > 1:
            self._kept = conn
        else:
            await pool.release(conn)
        return replies

    def _hand_out(
        self, requests: list[_Request], replies: list[list[Any]], *, final: bool = False
    ) -> list[_Request]:
        """Give each request its replies or its error; return those that met a missing script."""
        retry: list[_Request] = []
        for request, own in zip(requests, replies, strict=True):
            if request.future.done():  # cancelled meanwhile
                continue
            error = next((r for r in own if isinstance(r, Exception)), None)
            if missing_script(error) and not final:
                retry.append(request)
            elif error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(own)
        return retry

    async def _through_failover(
        self, cluster: QueuedCluster, requests: list[_Request], *, final: bool
    ) -> list[_Request]:
        """Send the requests until each has replies from a node that serves its keys (or
        the failover timeout passed: then its error); return those that met a missing script
        (unless ``final``). A reply saying the node lost its slots, or the cluster is failing
        over, is waited out here, for the requests that got one."""
        deadline = time.monotonic() + cluster.failover_timeout
        backoff = Backoff()
        retry: list[_Request] = []
        todo = requests
        while todo:
            lost: list[_Request] = []
            done: list[_Request] = []
            replies: list[list[Any]] = []
            for request, own in zip(todo, await self._execute(todo), strict=True):
                error = next((r for r in own if isinstance(r, Exception)), None)
                if error is not None and lost_node(error) and time.monotonic() < deadline:
                    lost.append(request)
                else:
                    done.append(request)
                    replies.append(own)
            retry += self._hand_out(done, replies, final=final)
            if lost:
                await backoff.wait()
            todo = [r for r in lost if not r.future.done()]
        return retry
