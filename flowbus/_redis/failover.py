"""Riding out a failover: the node serving some keys went away, or is not their primary any more.

When a Redis Cluster primary dies, a replica of it is promoted after the node timeout. Until
then commands for its slots reach no node (refused connections, ``CLUSTERDOWN``,
``TRYAGAIN``); a blocked read on a primary that is demoted ends with ``UNBLOCKED … (master ->
replica?)``; afterwards the old address answers ``MOVED``. A restarted single server looks
like the first case. What flowbus does about it is written here once:

- :func:`lost_node` tells those errors from all others;
- a command that blocks on nothing (a script call, a store read, a pipeline's share) is sent
  again with :class:`Backoff` for up to ``failover_timeout`` seconds (:func:`ride_out`; the
  cluster client and the automatic pipeline use it);
- a blocking reader follows its stream with a :class:`StreamFollower`: it backs off, catches
  up (its ``resync``: waiters re-read what they wait for, cursors step back to what the
  stream holds now), and reads again from whichever node owns the stream by then.

Sending a call again is safe for flowbus's commands: reads, idempotent writes, and the
transition scripts, whose call id answers a copy of an applied call as the first one was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowbus._core.codec import text

logger = logging.getLogger("flowbus")

T = TypeVar("T")

#: What a failing Redis call may raise (redis-py's cluster errors are no ``RedisError``).
CALL_ERRORS = (RedisError, RedisClusterException, OSError)

#: Errors of a node that lost its role or its slots, or has no primary for them yet (MOVED
#: and ASK are AskErrors; MASTERDOWN a ClusterDownError; LOADING a ConnectionError).
_NODE_ERRORS = (AskError, ClusterDownError, TryAgainError, ReadOnlyError, SlotNotCoveredError)
#: redis-py's words for a cluster it cannot map (no node reachable, slots not covered yet).
_UNMAPPED = ("Redis Cluster cannot be connected", "All slots are not covered", "startup_nodes")

#: First and longest wait (seconds) between attempts; the longest bounds how late a reader
#: notices that the promotion it waited for happened.
BACKOFF_START, BACKOFF_MAX = 0.05, 1.0


def lost_node(exc: BaseException) -> bool:
    """Whether ``exc`` says the node serving a call went away or changed (a restart, a
    failover, a slot migration), so the call is to be sent again, to the node that owns its
    keys by then."""
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError, *_NODE_ERRORS)):
        return True
    if isinstance(exc, RedisClusterException):
        return str(exc).startswith(_UNMAPPED)
    # a blocked read ended by a failover (``UNBLOCKED … (master -> replica?)``)
    return isinstance(exc, ResponseError) and str(exc).startswith("UNBLOCKED")


class Backoff:
    """Waits between attempts: doubling from ``BACKOFF_START`` up to ``BACKOFF_MAX``."""

    def __init__(self) -> None:
        self.delay = BACKOFF_START

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, BACKOFF_MAX)

    def reset(self) -> None:
        self.delay = BACKOFF_START


async def ride_out(send: Callable[[], Awaitable[T]], *, within: float) -> T:
    """``send()``'s result, sent again after each :func:`lost_node` error, for up to
    ``within`` seconds (then the last error is raised)."""
    deadline = time.monotonic() + within
    backoff = Backoff()
    while True:
        try:
            return await send()
        except CALL_ERRORS as exc:
            if not lost_node(exc) or time.monotonic() + backoff.delay > deadline:
                raise
        await backoff.wait()


class StreamFollower:
    """How one blocking reader follows its streams across restarts and failovers.

    ``resync`` runs before the first read after a lost node: whatever the reader serves is
    to be re-read, since events may have passed, or been lost with the old primary. A reader
    never gives up: it reads again, backing off, until a node serves its streams.
    """

    def __init__(self, what: str, resync: Callable[[], Awaitable[None]] | None = None) -> None:
        self.what = what
        self.resync = resync
        self.backoff = Backoff()
        #: When the node was lost (monotonic), while the reader has not read since.
        self._lost_at: float | None = None

    async def read(self, read: Callable[[], Awaitable[T]]) -> T | None:
        """``read()``'s reply; None after a lost node (having waited before the next try)."""
        try:
            if self._lost_at is not None and self.resync is not None:
                await self.resync()
            reply = await read()
        except CALL_ERRORS as exc:
            if not lost_node(exc):
                raise
            if self._lost_at is None:
                self._lost_at = time.monotonic()
                logger.warning("Reading %s failed (%s); following it to its node", self.what, exc)
            await self.backoff.wait()
            return None
        if self._lost_at is not None:
            logger.info("Reading %s again after %.1fs", self.what, time.monotonic() - self._lost_at)
            self._lost_at = None
            self.backoff.reset()
        return reply


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def caught_up(redis: Redis, cursors: dict[str, str]) -> None:
    """Step each cursor back to its stream's last entry where the stream ends before it (a
    promoted replica lacked the newest entries): new entries, whatever the new primary's
    clock, come after that."""
    pipe = redis.pipeline(transaction=False)
    for stream in cursors:
        pipe.xrevrange(stream, count=1)
    for stream, last in zip(list(cursors), await pipe.execute(), strict=True):
        newest = text(last[0][0]) if last else "0-0"
        if _id(newest) < _id(cursors[stream]):
            cursors[stream] = newest
