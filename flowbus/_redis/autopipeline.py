"""Commands issued in the same event-loop turn share one round trip (automatic pipelining).

A worker claims every run one ``XREADGROUP`` delivered, and finishes them about together; an
enqueuer creates many runs at once. Sent one by one, each costs redis-py's per-round-trip work
(pool checkout, socket write, wake-up; tens of µs of CPU) and a server read. Grouped, the cost is
paid once per turn of the loop, and a lone caller waits one loop turn longer.

On a cluster, redis-py's cluster pipeline sends each node its share of the turn's commands
(one round trip per node, all at once) and resends a redirected command to its new node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from flowbus._core.supervisor import spawn
from flowbus._redis.connect import pipeline_places

#: Adds one caller's commands to a shared pipeline (what it returns is ignored); must not raise.
Build = Callable[[Pipeline], object]

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
        #: On a cluster, a pipeline (split per node by redis-py) queues for connections.
        self._places = pipeline_places(redis)

    async def execute(self, build: Build) -> list[Any]:
        """The replies to the commands ``build`` adds, in order, once their pipeline ran."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append(_Request(build, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_GROUPS):
            spawn(self._send(pending[start : start + MAX_GROUPS]), name="pipeline")

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
        pipe = self._redis.pipeline(transaction=False)
        spans: list[tuple[int, int]] = []
        for request in live:
            start = len(pipe)
            request.build(pipe)
            spans.append((start, len(pipe)))
        if self._places is None:
            replies = await pipe.execute(raise_on_error=False)
        else:
            async with self._places():
                replies = await pipe.execute(raise_on_error=False)
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
