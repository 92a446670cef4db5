"""Pushing run changes to open pages: one blocking reader per queue, fanned out to SSE clients.

The reader is the process's wait multiplexer (``Waiters``): this hub subscribes to every
event of each queue it knows and hands each event to every connected page. The ``default``
queue is followed from the start (even before it holds a run); other queues are (re)listed
when a page is served, so a queue born later is followed from the next page load on.
Nothing is read on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from flowbus._redis.runtime import Runtime
from flowbus._redis.waiters import EVERY_RUN, Event
from flowbus.views.runs import queues

#: Events a slow page may have waiting before it is told to reload everything instead.
_BACKLOG = 1000


@dataclass(eq=False)
class Client:
    """One open page: the events it has not been sent yet (``None``: refresh everything)."""

    run_id: str | None
    events: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(_BACKLOG + 1))

    def offer(self, event: Event) -> None:
        if event is not None and self.run_id and event.run_id != self.run_id:
            return
        if self.events.qsize() >= _BACKLOG:
            while not self.events.empty():
                self.events.get_nowait()
            event = None
        self.events.put_nowait(event)


class LiveHub:
    """Follows every queue's events for this UI process and fans them out to clients."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clients: set[Client] = set()
        self._followed: set[str] = set()
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()

    async def follow_queues(self) -> None:
        """Subscribe to each known queue not followed yet (one ``SMEMBERS``)."""
        async with self._lock:
            for queue in {"default", *await queues(self.runtime)}:
                if queue not in self._followed:
                    subscription = self.runtime.waiters.subscribe(
                        queue, EVERY_RUN, callback=self._publish
                    )
                    await self._stack.enter_async_context(subscription)
                    self._followed.add(queue)

    def _publish(self, event: Event) -> None:
        for client in self.clients:
            client.offer(event)

    @contextlib.asynccontextmanager
    async def connect(self, run_id: str | None = None) -> AsyncIterator[Client]:
        client = Client(run_id)
        self.clients.add(client)
        try:
            yield client
        finally:
            self.clients.discard(client)

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._followed.clear()
