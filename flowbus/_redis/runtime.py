"""The per-event-loop runtime: one Redis connection pool, the run store and the waiters.

redis-py's asyncio connections belong to the loop that opened them, so each loop that uses
flowbus gets its own :class:`Runtime`; sync callers share one background loop (:mod:`bridge`).
"""

from __future__ import annotations

import asyncio
import weakref

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowbus._redis.connect import as_cluster_url, close_client, open_client
from flowbus._redis.deployment_store import DeploymentStore
from flowbus._redis.heartbeat import Leases, heartbeat
from flowbus._redis.store import RunStore
from flowbus._redis.url_file import prepared
from flowbus._redis.waiters import Waiters
from flowbus.exceptions import ConfigurationError
from flowbus.settings import Settings, get_settings

#: The runtime of each loop, or the task still opening it (shared by concurrent first callers).
_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[Runtime]] = (
    weakref.WeakKeyDictionary()
)


#: Attempts after the first for a command whose connection dropped, and their backoff (s)
#: (one server: a cluster's commands wait out a failover instead, see connect.QueuedCluster).
_RETRIES, _RETRY_BASE, _RETRY_CAP = 5, 0.05, 1.0


def resolve_url(settings: Settings) -> str:
    """The configured Redis URL, or the embedded default server's (started if needed).

    A plain URL of a cluster node comes back as a cluster URL (see :mod:`connect`).
    """
    if settings.redis_url:
        return as_cluster_url(settings.redis_url)
    from flowbus._redis.embedded import default_server_url

    return default_server_url(settings)


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def open_redis(url: str, settings: Settings, *, max_connections: int | None = None) -> Redis:
    """A client for ``url`` (one server or a cluster); callers beyond the cap queue.

    A command that meets a dropped connection (a restarted server, a failover) is sent again
    on a new one, a few times. That is safe for flowbus's commands: reads, idempotent writes,
    and compare-and-set scripts, which carry a call id, so a copy of a call that was applied is
    answered as the first one was (not refused by the state it made) and applied once.
    On a cluster, a command also waits out a failover (``FLOWBUS_FAILOVER_TIMEOUT``).
    Connections to the default server look its address up in its URL file each time.
    """
    return open_client(
        url,
        max_connections=max_connections or settings.max_connections,
        connect_timeout=settings.connect_timeout,
        failover_timeout=settings.failover_timeout,
        health_check_interval=30,
        retry=Retry(
            ExponentialBackoff(cap=_RETRY_CAP, base=_RETRY_BASE),
            _RETRIES,
            supported_errors=(RedisConnectionError, RedisTimeoutError),
        ),
        prepare_pool=lambda pool: prepared(pool, settings),
    )


class Runtime:
    """Everything flowbus holds open on one event loop."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self.redis = open_redis(url, settings)
        beat = heartbeat()
        beat.adopt(settings.lease_seconds)
        self.leases = Leases(beat, settings, url)
        self.store = RunStore(self.redis, settings, self.leases)
        self.deployments = DeploymentStore(self.redis, self.store.keys)
        self.waiters = Waiters(url, settings)

    async def check(self) -> None:
        """Fail fast with :class:`ConfigurationError` if Redis cannot be reached."""
        try:
            await self.redis.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise ConfigurationError(f"Cannot reach Redis at {redact(self.url)}: {exc}") from exc
        except RedisError as exc:
            raise ConfigurationError(f"Redis at {redact(self.url)} refused us: {exc}") from exc

    async def aclose(self) -> None:
        await asyncio.to_thread(self.leases.release)
        await self.waiters.aclose()
        await close_client(self.redis)


async def get_runtime() -> Runtime:
    """The runtime of the running loop, opened (and checked) on first use.

    Concurrent first callers share one opening task: it is stored before the first await, or
    each caller would open a pool of its own. A failed opening is forgotten, so the next
    call tries again.
    """
    loop = asyncio.get_running_loop()
    opening = _runtimes.get(loop)
    if opening is None:
        opening = _runtimes[loop] = loop.create_task(_open(get_settings()))
    try:
        return await asyncio.shield(opening)
    except Exception:
        if _runtimes.get(loop) is opening:
            del _runtimes[loop]
        raise


async def _open(settings: Settings) -> Runtime:
    # finding or starting the embedded server takes a file lock and may wait for a process:
    # never on the loop, where it would stall every other run
    url = await asyncio.to_thread(resolve_url, settings)
    runtime = Runtime(settings, url)
    try:
        await runtime.check()
    except ConfigurationError:
        await runtime.aclose()
        raise
    return runtime


async def close_runtime() -> None:
    """Close the running loop's runtime (a new one is made on next use)."""
    opening = _runtimes.pop(asyncio.get_running_loop(), None)
    if opening is None:
        return
    try:
        runtime = await opening
    except Exception:
        return  # it never opened: nothing to close
    await runtime.aclose()
