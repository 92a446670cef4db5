"""Raw clients of the test server, whether it is one server or a cluster (no pytest here:
worker processes import it through the flows they run)."""

from __future__ import annotations

import functools
import os
from typing import Any, cast

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode

from flowbus._core.codec import text
from flowbus._redis.connect import cluster_address


def _url(url: str | None) -> str:
    return url or os.environ["FLOWBUS_REDIS_URL"]


def _untimed(options: dict[str, Any]) -> dict[str, Any]:
    """``options``, with no socket timeout unless given, as flowbus opens its own clients.

    redis-py times reads out after 5 s by default, so a blocked read of a test would end
    early; and it sends each command of a timed connection under an ``asyncio.wait_for``,
    which on Python 3.11 drops a cancellation that comes as the write completes, so a task
    reading on such a client can outlive the cancel that was to end it.
    """
    return {"socket_timeout": None, **options}


def sync_redis(url: str | None = None, **options: Any) -> redis.Redis:
    """A sync client: ``redis.Redis``, or a ``RedisCluster`` (same commands) on a cluster."""
    address = cluster_address(_url(url))
    if address is None:
        return redis.Redis.from_url(_url(url), **_untimed(options))
    nodes = [redis.cluster.ClusterNode(h, p) for h, p in address.nodes]  # type: ignore[no-untyped-call]
    cluster = redis.RedisCluster(startup_nodes=nodes, **address.options, **_untimed(options))
    return cast("redis.Redis", cluster)


def async_redis(url: str | None = None, **options: Any) -> aredis.Redis:
    """An asyncio client: ``Redis``, or a ``RedisCluster`` (same commands) on a cluster."""
    address = cluster_address(_url(url))
    if address is None:
        return aredis.Redis.from_url(_url(url), **_untimed(options))
    nodes = [AsyncClusterNode(host, port) for host, port in address.nodes]
    cluster = aredis.RedisCluster(startup_nodes=nodes, **address.options, **_untimed(options))
    return cast("aredis.Redis", cluster)


def as_user(url: str, user: str, password: str) -> str:
    """``url`` signed in as ``user`` (an ACL user that exists on every node)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{password}@{rest.rpartition('@')[2]}"


def cli_args(url: str | None = None) -> list[str]:
    """``redis-cli`` options that reach the server (on a cluster: one node, following
    redirects with ``-c``)."""
    address = cluster_address(_url(url))
    if address is None:
        return ["-u", _url(url)]
    host, port = address.nodes[0]
    password = address.options.get("password")
    auth = f":{password}@" if password else ""
    return ["-c", "-u", f"redis://{auth}{host}:{port}"]


def primaries(url: str | None = None) -> tuple[redis.Redis, ...]:
    """A plain client of the server, or of each primary of the cluster (for ``INFO``).

    Made once per URL and kept: a test's ``INFO`` counters must not count how the asking
    connected.
    """
    return _primaries(_url(url))


@functools.cache
def _primaries(url: str) -> tuple[redis.Redis, ...]:
    address = cluster_address(url)
    if address is None:
        return (redis.Redis.from_url(url),)
    host, port = address.nodes[0]
    with redis.Redis(host=host, port=port, **address.options) as client:
        slots: Any = client.execute_command("CLUSTER", "SLOTS")
    nodes = sorted({(text(s[2][0]), int(s[2][1])) for s in slots})
    return tuple(redis.Redis(host=h, port=p, **address.options) for h, p in nodes)


def infos(section: str, url: str | None = None) -> list[dict[str, Any]]:
    """``INFO section`` of the server, or of each primary of the cluster."""
    return [client.info(section) for client in primaries(url)]


def summed(section: str, url: str | None = None) -> dict[str, int]:
    """The numeric fields of ``INFO section`` (``commandstats``: calls), summed over primaries."""
    total: dict[str, int] = {}
    for info in infos(section, url):
        for name, value in info.items():
            number = value.get("calls") if isinstance(value, dict) else value
            if isinstance(number, int):
                total[name] = total.get(name, 0) + number
    return total
