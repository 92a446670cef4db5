"""Connections to the default server that look up its address anew each time they connect.

The default server's URL file names its port and password. A server restarted after a stop,
a crash or a reboot comes back on the same port when it is free, else on another, written
to the file: a client that lost its connection re-reads the file before connecting again, so
a worker started before the restart finds the new server by itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from redis.asyncio.connection import ConnectionPool

from flowbus._redis.packing import packed_by_hiredis
from flowbus.settings import Settings

log = logging.getLogger(__name__)

PoolT = TypeVar("PoolT", bound=ConnectionPool)


def url_file(home: Path) -> Path:
    """The file naming the default server's URL, password included (mode 0600)."""
    return home / "redis.url"


def read_address(url_file: Path) -> tuple[str, int, str | None] | None:
    """Host, port and password the file names, or None if it names none."""
    try:
        parts = urlsplit(url_file.read_text().strip())
        host, port = parts.hostname, parts.port
    except (OSError, ValueError):
        return None
    if not host or not port:
        return None
    return host, port, unquote(parts.password) if parts.password else None


def _follow(connection: Any, url_file: Path) -> None:
    address = read_address(url_file)
    if address is None:
        return
    host, port, password = address
    if (connection.host, connection.port) != (host, port):
        log.info("The server moved to %s:%s (per %s)", host, port, url_file)
    connection.host, connection.port, connection.password = host, port, password


def follow_url_file(pool: PoolT, path: Path) -> PoolT:
    """``pool``, whose new connections go where the file ``path`` says the server is now."""
    base: Any = pool.connection_class

    async def _connect(self: Any) -> None:
        _follow(self, path)
        await base._connect(self)

    pool.connection_class = type(base.__name__, (base,), {"_connect": _connect})
    return pool


def prepared(pool: PoolT, settings: Settings) -> PoolT:
    """``pool`` as flowbus uses it: packed by hiredis, and following the default server's
    URL file when no ``FLOWBUS_REDIS_URL`` is set."""
    packed_by_hiredis(pool)
    if not settings.redis_url:
        follow_url_file(pool, url_file(settings.home))
    return pool
