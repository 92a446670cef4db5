"""The per-process wait multiplexer: many waiting runs, one blocking read per watcher.

A queue's events stream carries every transition of its runs, its control stream the few a
process holding a run must act on. A process that waits on runs of a queue holds ONE blocking
``XREAD`` for such streams (on a connection of its own) and hands each entry to the waiters of
that run id; a worker watches all its queues' control streams with one. 10,000 paused runs
cost one connection and, while nothing happens, one command per ``recheck_interval``.

No lost wake-up: a watcher pins its cursor to a concrete stream id before a waiter is
registered, and a waiter registers before it acts (pauses, reads the state), so every event
after that point reaches it. After a reconnect or a failover (the watcher follows its streams
to the node that owns them now, its cursors stepped back to what they hold there) every
waiter is told to re-read its run, and so after a burst that may have been trimmed (streams
are capped) before the watcher read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from flowbus._core.codec import text
from flowbus._core.supervisor import spawn, supervise
from flowbus._redis.connect import by_slot, close_client, is_cluster, open_client
from flowbus._redis.events import RawEntry, RunEvent, event_or_none, raw_xread
from flowbus._redis.failover import StreamFollower, caught_up, lost_node
from flowbus._redis.keys import Keys
from flowbus._redis.url_file import prepared
from flowbus.settings import Settings

logger = logging.getLogger("flowbus._redis.waiters")

#: Entries read per wake-up of a watcher; no stream it reads is capped below this.
_BATCH = 1000

#: Most watchers' reads blocked at once on one cluster node (one per stream watched).
_CLUSTER_WATCHERS = 10_000

#: Subscribe with this "run id" to receive every event that sets a deadline in the queue.
NEW_DEADLINES = "*deadline"
#: Subscribe with this "run id" to receive every event of the queue (a live view of all runs).
EVERY_RUN = "*all"

#: Subscribe with this "run id" to receive every request to judge a resume's input (workers
#: judge those of suspended runs).
JUDGE_REQUESTS = "*judge"
#: Subscriptions to a kind of event of one stream, not to one run.
_OF_A_STREAM = frozenset({NEW_DEADLINES, EVERY_RUN, JUDGE_REQUESTS})

#: What a waiter receives: a run event, or ``None`` for "re-read the run".
Event = RunEvent | None


class Subscription:
    """One waiter on one run: the events of that run, in order, from ``async with`` on.

    A process may hold 100,000 of them (one per paused run), so a subscription is a few slots:
    the events not taken yet, and the future a waiting task sleeps on while it waits (an
    ``asyncio.Queue`` per subscription cost a kilobyte and a half of deques).
    """

    __slots__ = ("_pending", "_stream", "_waiter", "_watcher", "_waiters", "callback", "run_id")

    def __init__(
        self,
        run_id: str,
        callback: Callable[[Event], None] | None = None,
        *,
        waiters: Waiters | None = None,
        stream: str = "",
    ) -> None:
        self.run_id = run_id
        #: Called with each event instead of queueing it (a listener that needs no task).
        self.callback = callback
        #: Events delivered and not taken yet (a list only while there are some).
        self._pending: list[Event] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._waiters, self._stream = waiters, stream
        self._watcher: StreamWatcher | None = None

    async def __aenter__(self) -> Subscription:
        if self._waiters is None:
            raise RuntimeError("this subscription is not for a stream of a process's waiters")
        self._watcher = await self._waiters.watcher(self._stream)
        self._watcher.add(self._stream, self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._watcher is not None:
            self._watcher.discard(self._stream, self)
            self._watcher = None

    async def next(self, within: float | None = None) -> Event:
        """The next event of the run, or ``None``: re-read the run (after a reconnect).

        :class:`TimeoutError` if none came ``within`` seconds (a timer on the one future
        waited on: no cancel scope, no cancellation).
        """
        if not self._pending:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if within is None else loop.call_later(within, _wake, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self._pending:
                raise TimeoutError
        event = self._pending.pop(0)
        if not self._pending:
            self._pending = None
        return event

    def skip_queued(self) -> None:
        """Forget the events delivered but not taken yet."""
        self._pending = None

    def deliver(self, event: Event) -> None:
        if self.callback is not None:
            self.callback(event)
            return
        if self._pending is None:
            self._pending = [event]
        else:
            self._pending.append(event)
        if self._waiter is not None:
            _wake(self._waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class StreamWatcher:
    """The one blocking reader of some streams in this process (one ``XREAD`` for them all).

    A worker watches the control streams of all its queues with one watcher, so its blocking
    connections do not grow with its queues; on a cluster, one watcher per node would do.
    """

    def __init__(self, redis: Redis, streams: Sequence[str], recheck: float) -> None:
        #: A connection of its own: a watcher blocks on it for as long as it lives.
        self.redis = redis
        self.cursors = dict.fromkeys(streams, "0-0")
        self.recheck_ms = max(1, int(recheck * 1000))
        self.subscribers: dict[str, list[Subscription]] = {}
        #: Subscribers of events of a kind (``NEW_DEADLINES``, ``EVERY_RUN``) of one stream.
        self.stream_subscribers: dict[tuple[str, str], list[Subscription]] = {}
        self.task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> list[str]:
        return list(self.cursors)

    async def stop(self) -> None:
        """Cancel the reading task and wait until it ended (its connection is the owner's)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def pin_cursors(self) -> None:
        """Start from each stream's last id (a concrete id: ``$`` could skip an event)."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.cursors:
            pipe.xrevrange(stream, count=1)
        for stream, last in zip(self.cursors, await pipe.execute(), strict=True):
            self.cursors[stream] = text(last[0][0]) if last else "0-0"

    def broadcast(self, event: Event) -> None:
        for subs in (*self.subscribers.values(), *self.stream_subscribers.values()):
            for sub in list(subs):
                sub.deliver(event)

    async def run(self) -> None:
        """Read forever; after any failure, back off, have every waiter re-read, read again.

        A lost node (a restart, a failover) is followed (:class:`StreamFollower`); a key of
        the wrong type or a missing permission restarts the loop. Neither ends the watcher
        (its waiters would hang): they wake up to re-read their runs instead.
        """
        await supervise(
            f"Watcher of {self.name}",
            self._read_forever,
            on_restart=lambda: self.broadcast(None),
            expected=(RedisError, OSError),
        )

    async def _read_forever(self) -> None:
        follower = StreamFollower(f"the watched {self.name}", self._resync)
        # a watcher of one server has a connection of its own; a cluster's share a client
        own = getattr(self.redis, "single_connection_client", False)
        read_once = self._read if own else self._read_through_client
        while True:
            reply = await follower.read(read_once)
            for stream, read in raw_xread(reply):
                self._deliver(stream, read)
                if len(read) >= _BATCH and await self._may_have_lost(stream, read[0][0]):
                    logger.warning(
                        "Watcher of %s fell behind the stream's cap; every waiter re-reads its run",
                        stream,
                    )
                    self.broadcast(None)
            if reply:
                # the waiters just woken run first: sending the next read can wait for them
                await asyncio.sleep(0)

    async def _read(self) -> Any:
        """One blocking read of every stream from its cursor, on the watcher's own connection,
        its reply left raw: a wake-up is on the critical path of every resume, and redis-py's
        command machinery and reply callbacks cost more than the rest of it. A dropped
        connection is retried as redis-py retries a command."""
        if self.redis.connection is None:
            await self.redis.initialize()
        conn = self.redis.connection
        assert conn is not None  # a client of one connection holds it once initialized
        command = ("XREAD", "COUNT", _BATCH, "BLOCK", self.recheck_ms, "STREAMS")
        args = (*command, *self.cursors, *self.cursors.values())

        async def exchange() -> Any:
            await conn.send_command(*args)
            return await conn.read_response()

        return await conn.retry.call_with_retry(exchange, lambda _error: conn.disconnect())

    async def _read_through_client(self) -> Any:
        """One blocking read through a shared client (a cluster's finds each stream's node)."""
        streams: Any = self.cursors
        return await self.redis.xread(streams, count=_BATCH, block=self.recheck_ms)

    async def _resync(self) -> None:
        """After a lost node: step back cursors the streams end before, then have every
        waiter re-read its run (whatever happened meanwhile, it reads it or the watcher does)."""
        await caught_up(self.redis, self.cursors)
        self.broadcast(None)

    @property
    def name(self) -> str:
        streams = self.streams
        return streams[0] if len(streams) == 1 else f"{streams[0]} and {len(streams) - 1} more"

    def _deliver(self, stream: str, read: list[RawEntry]) -> None:
        for entry_id, fields in read:
            self.cursors[stream] = entry_id
            self._dispatch(stream, entry_id, fields)

    def _dispatch(self, stream: str, entry_id: str, fields: Mapping[Any, Any]) -> None:
        """Hand an entry to its run's waiters (and the deadline waiters, if it sets one),
        parsed once, and only when someone waits for it."""
        run_id = fields.get(b"run_id", b"").decode(errors="replace")
        waiting = list(self.subscribers.get(run_id, ()))
        if fields.get(b"deadline"):
            waiting += self.stream_subscribers.get((NEW_DEADLINES, stream), ())
        elif fields.get(b"action") == b"judge":
            waiting += self.stream_subscribers.get((JUDGE_REQUESTS, stream), ())
        waiting += self.stream_subscribers.get((EVERY_RUN, stream), ())
        if waiting and (event := event_or_none(stream, entry_id, fields)) is not None:
            for sub in waiting:
                try:
                    sub.deliver(event)
                except Exception:
                    logger.exception("A waiter of run %s failed on an event", sub.run_id)

    async def _may_have_lost(self, stream: str, first_read: str) -> bool:
        """Whether entries between the old cursor and ``first_read`` may have been trimmed.

        Only a full batch can follow a loss: the cap keeps at least ``_BATCH`` entries, all
        newer than anything trimmed. Trimming takes the oldest first, so while the stream
        still holds an entry older than ``first_read`` (the cursor's own, or older), nothing
        after the cursor was trimmed.
        """
        try:
            oldest: Any = await self.redis.xrange(stream, count=1)
        except (RedisError, OSError) as exc:
            if not lost_node(exc):
                raise
            return True  # the next read reconnects
        return bool(oldest) and text(oldest[0][0]) == first_read

    def add(self, stream: str, sub: Subscription) -> None:
        self._registry(stream, sub).append(sub)

    def discard(self, stream: str, sub: Subscription) -> None:
        subs = self._registry(stream, sub)
        if sub in subs:
            subs.remove(sub)
        if not subs:
            if sub.run_id in _OF_A_STREAM:
                del self.stream_subscribers[(sub.run_id, stream)]
            else:
                del self.subscribers[sub.run_id]

    def _registry(self, stream: str, sub: Subscription) -> list[Subscription]:
        """The subscribers ``sub`` joins: a list (a run has one or two; a set costs more)."""
        if sub.run_id in _OF_A_STREAM:
            return self.stream_subscribers.setdefault((sub.run_id, stream), [])
        return self.subscribers.setdefault(sub.run_id, [])


class Waiters:
    """Every watcher of one process (one event loop), each on a connection of its own.

    ``redis`` is a small pool for other blocking reads (``receive_input``, run followers).
    """

    def __init__(self, url: str, settings: Settings) -> None:
        self.keys = Keys(settings.key_prefix)
        self.recheck = settings.recheck_interval
        self.url = url
        self.connect_timeout = settings.connect_timeout
        self.settings = settings
        self.redis = open_client(
            url,
            max_connections=settings.max_watch_connections,
            connect_timeout=settings.connect_timeout,
            prepare_pool=lambda pool: prepared(pool, settings),
        )
        #: On a cluster, the watchers' reads share one client: each read holds a connection
        #: of the node owning its stream, for as long as it blocks.
        self._cluster_watch = (
            open_client(
                url, max_connections=_CLUSTER_WATCHERS, connect_timeout=self.connect_timeout
            )
            if is_cluster(self.redis)
            else None
        )
        #: The watcher of each watched stream (one watcher may serve several streams).
        self.watchers: dict[str, StreamWatcher] = {}
        self._starting = asyncio.Lock()

    async def watch(self, streams: Sequence[str]) -> None:
        """Watch those of ``streams`` not watched yet with ONE new watcher (one connection);
        on a cluster, one per hash slot (a read names the streams of one slot)."""
        async with self._starting:
            new = [s for s in dict.fromkeys(streams) if s not in self.watchers]
            for group in by_slot(self.redis, new):
                watcher = StreamWatcher(self._connection(), group, self.recheck)
                await watcher.pin_cursors()
                watcher.task = spawn(watcher.run(), name=f"watcher of {watcher.name}")
                self.watchers.update(dict.fromkeys(group, watcher))

    async def watcher(self, stream: str) -> StreamWatcher:
        """The watcher of ``stream``, started if there is none yet."""
        if stream not in self.watchers:
            await self.watch([stream])
        return self.watchers[stream]

    def subscribe(
        self,
        queue: str,
        run_id: str,
        *,
        control: bool = False,
        callback: Callable[[Event], None] | None = None,
    ) -> Subscription:
        """Receive the events of ``run_id`` published after ``async with`` entered it.

        ``control``: only what a process holding the run acts on (see ``QueueKeys.control``),
        from a stream that is nearly silent, unlike the queue's events stream.
        """
        qkeys = self.keys.queue(queue)
        stream = qkeys.shared.control if control else qkeys.shared.events
        return Subscription(run_id, callback, waiters=self, stream=stream)

    def _connection(self) -> Redis:
        if self._cluster_watch is not None:
            return self._cluster_watch
        client = Redis.from_url(
            self.url,
            single_connection_client=True,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=None,
            socket_keepalive=True,
        )
        prepared(client.connection_pool, self.settings)  # before its one connection is made
        return client

    async def aclose(self) -> None:
        for watcher in {id(w): w for w in self.watchers.values()}.values():
            await watcher.stop()
            if watcher.redis is not self._cluster_watch:
                await watcher.redis.aclose()
        self.watchers.clear()
        if self._cluster_watch is not None:
            await close_client(self._cluster_watch)
        await close_client(self.redis)
