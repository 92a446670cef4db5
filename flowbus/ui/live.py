"""Pushing run changes to open pages: one blocking reader per queue, fanned out to SSE clients.

The reader is the process's wait multiplexer (``Waiters``): this hub subscribes to every
event of each queue and hands each event to every connected page. It follows the queues
listed when it starts (and ``default``, even before it holds a run), then each queue as it is
announced (``queue_news``: a blocking read), so a queue born later is followed at once; pages
then re-read what they show, since its first events came before the hub followed it.
Nothing is read on a timer.

A page is rendered from a read, then opens its event stream: whatever the hub publishes in
between would reach no page. So the hub numbers what it publishes and keeps the last events;
a page names the hub's position taken before its read (``since``), and its stream starts with
what the hub published after that (or "re-read everything" when the hub kept too little, or
is another process than the one that rendered the page). Each message carries its position
as its SSE id, so a stream the browser reopens by itself (``Last-Event-ID``) starts after the
last message it got, not at the page's first position.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from flowbus._core.supervisor import spawn, supervise
from flowbus._redis.queue_news import announced
from flowbus._redis.runtime import Runtime
from flowbus._redis.waiters import EVERY_RUN, Event
from flowbus._redis.watch import last_id
from flowbus.views.runs import queues

#: Events a slow page may have waiting before it is told to reload everything instead.
_BACKLOG = 1000


#: An event for a page and the hub's position once it was published (the message's id).
Numbered = tuple[str, Event]


@dataclass(eq=False)
class Client:
    """One open page: the events it has not been sent yet (``None``: refresh everything)."""

    run_id: str | None
    events: asyncio.Queue[Numbered] = field(default_factory=lambda: asyncio.Queue(_BACKLOG + 1))

    def offer(self, position: str, event: Event) -> None:
        if event is not None and self.run_id and event.run_id != self.run_id:
            return
        if self.events.qsize() >= _BACKLOG:
            while not self.events.empty():
                self.events.get_nowait()
            event = None
        self.events.put_nowait((position, event))


class LiveHub:
    """Follows every queue's events for this UI process and fans them out to clients."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clients: set[Client] = set()
        self._followed: set[str] = set()
        #: This hub among the processes that may have rendered a page: a position names it.
        self._epoch = secrets.token_hex(4)
        #: How many events were published; the last ``_BACKLOG`` of them, numbered.
        self._published = 0
        self._recent: deque[tuple[int, Event]] = deque(maxlen=_BACKLOG)
        self._stack = contextlib.AsyncExitStack()
        self._news: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow the known queues, then each new one as it is announced."""
        after = await self._follow_known()
        self._news = spawn(self._follow_news(after), name="queue follower of the web page")

    async def _follow_known(self) -> str:
        """Follow every listed queue; the announcements' id to read on from (pinned first,
        so a queue announced while the list is read is not missed)."""
        after = await last_id(self.runtime, self.runtime.store.keys.queues_added())
        for queue in {"default", *await queues(self.runtime)}:
            await self._follow(queue)
        return after

    async def _follow_news(self, after: str) -> None:
        pinned: str | None = after

        async def read() -> None:
            nonlocal pinned
            # after a failure, list again: announcements may have come while it was down
            since = pinned if pinned is not None else await self._follow_known()
            pinned = None
            async for queue in announced(self.runtime, after=since):
                if queue not in self._followed:
                    await self._follow(queue)
                    self._publish(None)  # its events so far came before: pages re-read

        await supervise("Queue follower of the web page", read, expected=(RedisError, OSError))

    async def _follow(self, queue: str) -> None:
        if queue in self._followed:
            return
        subscription = self.runtime.waiters.subscribe(queue, EVERY_RUN, callback=self._publish)
        await self._stack.enter_async_context(subscription)
        self._followed.add(queue)

    def _publish(self, event: Event) -> None:
        self._published += 1
        self._recent.append((self._published, event))
        position = self.position()
        for client in self.clients:
            client.offer(position, event)

    def position(self, number: int | None = None) -> str:
        """Where the hub is now (or was once it published event ``number``): a page read
        after this names it as its ``since``."""
        return f"{self._epoch}-{self._published if number is None else number}"

    def _catch_up(self, client: Client, since: str) -> None:
        """Offer ``client`` what was published after ``since`` (or a re-read of everything)."""
        epoch, _, count = since.partition("-")
        seen = int(count) if epoch == self._epoch and count.isdigit() else -1
        kept_from = self._recent[0][0] if self._recent else self._published + 1
        if not 0 <= seen <= self._published or seen + 1 < kept_from:
            client.offer(self.position(), None)
            return
        for number, event in self._recent:
            if number > seen:
                client.offer(self.position(number), event)

    @contextlib.asynccontextmanager
    async def connect(
        self, run_id: str | None = None, since: str | None = None
    ) -> AsyncIterator[Client]:
        """A client of the events published from now on (and since ``since``, a position)."""
        client = Client(run_id)
        self.clients.add(client)
        if since is not None:
            self._catch_up(client, since)
        try:
            yield client
        finally:
            self.clients.discard(client)

    async def aclose(self) -> None:
        if self._news is not None:
            self._news.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._news
        await self._stack.aclose()
        self._followed.clear()


class StampPosition:
    """ASGI middleware: each request carries the hub's position (``live_since`` in its state)
    taken before the page reads anything, for the page to open its event stream with."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hub: LiveHub = scope["app"].state.hub
            scope.setdefault("state", {})["live_since"] = hub.position()
        await self.app(scope, receive, send)
